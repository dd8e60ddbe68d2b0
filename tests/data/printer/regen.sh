#!/bin/sh
# Generated goldens: regenerates every <name>.out from <name>.pcap with the REAL tcpdump.
# Generated, do not edit the .out files by hand. Expected: tcpdump 4.99.3 / libpcap 1.10.3.
#   sh tests/data/printer/regen.sh
set -eu
cd "$(dirname "$0")"
for f in *.pcap; do
    TZ=UTC tcpdump -n -v -r "$f" > "${f%.pcap}.out" 2>/dev/null
done
