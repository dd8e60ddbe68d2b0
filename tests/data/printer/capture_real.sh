#!/bin/sh
# Records the real_*.pcap captures of this directory from REAL kernel traffic
# (needs root). Loopback only (127.0.0.1, ::1); the ICMP-unreachable capture
# runs inside a private namespace "rstp-icmp-$$" holding REJECT rules, which is
# deleted on exit even on failure. Then run regen.sh for the .out files.
#   sh tests/data/printer/capture_real.sh && sh tests/data/printer/regen.sh
set -eu
cd "$(dirname "$0")"
NS="rstp-icmp-$$"
TD=""

cleanup() {
    [ -n "$TD" ] && kill "$TD" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# capture FILE FILTER SCENARIO [NETNS]: tcpdump on lo while traffic.py runs.
capture() {
    file=$1 filter=$2 scenario=$3 ns=${4:-}
    run=""
    [ -n "$ns" ] && run="ip netns exec $ns"
    $run tcpdump -i lo -U -s 262144 -w "$file" "$filter" 2>/tmp/rstp-td.$$ &
    TD=$!
    i=0
    while ! grep -q listening /tmp/rstp-td.$$ && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    sleep 0.5  # the filter is attached a little after the message
    $run python3 traffic.py "$scenario" || true
    sleep 0.5
    kill -INT "$TD"; wait "$TD" || true
    TD=""
    rm -f /tmp/rstp-td.$$
}

capture real_refused.pcap "tcp port 7211" refused
capture real_session.pcap "tcp port 7212" session
capture real_linger.pcap "tcp port 7213" linger
capture real_http.pcap "tcp port 8080" http

ip netns add "$NS"
ip netns exec "$NS" sh -e <<NSEOF
ip link set lo up
ip addr add 192.0.2.1/32 dev lo
ip -6 addr add 2001:db8::1/128 dev lo nodad
iptables -A INPUT -p tcp --dport 7301 -j REJECT --reject-with icmp-port-unreachable
iptables -A INPUT -p tcp --dport 7302 -j REJECT --reject-with icmp-host-prohibited
iptables -A INPUT -p tcp --dport 7303 -j REJECT --reject-with icmp-admin-prohibited
iptables -A INPUT -p tcp --dport 7304 -j REJECT --reject-with icmp-net-unreachable
iptables -A INPUT -p tcp --dport 7305 -j REJECT --reject-with icmp-host-unreachable
iptables -A INPUT -p tcp --dport 7306 -j REJECT --reject-with icmp-proto-unreachable
iptables -A INPUT -p tcp --dport 7307 -j REJECT --reject-with icmp-net-prohibited
ip6tables -A INPUT -p tcp --dport 7301 -j REJECT --reject-with icmp6-port-unreachable
ip6tables -A INPUT -p tcp --dport 7302 -j REJECT --reject-with icmp6-adm-prohibited
ip6tables -A INPUT -p tcp --dport 7303 -j REJECT --reject-with icmp6-no-route
ip6tables -A INPUT -p tcp --dport 7304 -j REJECT --reject-with icmp6-addr-unreachable
ip6tables -A INPUT -p tcp --dport 7305 -j REJECT --reject-with tcp-reset
NSEOF
capture real_reject.pcap "icmp or icmp6 or tcp portrange 7301-7307" reject "$NS"
