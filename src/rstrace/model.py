"""The records that flow through rstrace's pipeline.

sources -> Segment / Unreachable -> ConnectionTable (track.py) -> Connection
        -> rules (diagnose.py) -> Finding -> renderers

Every field says its meaning and unit, in Zeek's manner where Zeek has the field.
Timestamps are integer microseconds since the epoch: floats lose the last digit
at today's epoch, and tcpdump prints microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# TCP flag bits as they sit in byte 13 of the TCP header.
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80


@dataclass(slots=True)
class Segment:
    """One TCP segment as read from a capture (a packet, decoded once)."""

    ts: int
    """Capture time, microseconds since the epoch."""
    iface: str | None
    """Interface name when the capture says it (pcapng IDB, live handle); else None."""
    version: int
    """IP version: 4 or 6."""
    src: str
    """Source address, textual (inet_ntop)."""
    dst: str
    """Destination address, textual."""
    sport: int
    dport: int
    flags: int
    """TCP flags byte (FIN SYN RST PSH ACK URG ECE CWR = bits 0..7)."""
    seq: int
    ack: int
    win: int
    """Raw window field (not scaled)."""
    payload: int
    """TCP payload length from the IP header lengths (on the wire, not as captured)."""
    ttl: int
    """IPv4 TTL or IPv6 hop limit."""
    ip_id: int
    """IPv4 identification; -1 for IPv6."""
    df: bool
    """IPv4 don't-fragment bit; False for IPv6."""
    raw: bytes
    """The IP packet as captured (starting at the IP header), for evidence lines."""
    checksum_ok: bool | None = None
    """TCP checksum verdict when --verify-checksums asked for it; None when not checked."""


@dataclass(slots=True)
class Unreachable:
    """An ICMP destination-unreachable (or ICMPv6 type 1) quoting a TCP segment."""

    ts: int
    iface: str | None
    version: int
    src: str
    """Who sent the ICMP error (the host or router that answered)."""
    dst: str
    icmp_type: int
    icmp_code: int
    ttl: int
    quoted_src: str
    """Source of the quoted (original) TCP segment: the client."""
    quoted_dst: str
    quoted_sport: int
    quoted_dport: int
    quoted_seq: int | None
    """Sequence number of the quoted segment when the quote is long enough, else None."""
    raw: bytes


@dataclass(slots=True)
class Evidence:
    """A packet kept to show the user why a finding was made."""

    ts: int
    iface: str | None
    raw: bytes
    """The IP packet (IPv4 or IPv6), as captured."""
    note: str = ""
    """Why this packet matters, e.g. 'the SYN' or 'the reset'."""


@dataclass(slots=True)
class Side:
    """What one endpoint of a connection did, as far as control packets show.

    The rules read these fields, never Zeek's conn_state, so that findings are the
    same whether or not data packets reached Python (the BPF prefilter drops them).
    """

    isn: int | None = None
    """Initial sequence number (from this side's SYN or SYN-ACK)."""
    syns: int = 0
    """SYN (or SYN-ACK for the responder) packets sent, retransmissions included."""
    syn_seqs: int = 0
    """Distinct sequence numbers among those SYNs."""
    first_syn_ts: int | None = None
    last_syn_ts: int | None = None
    fin_ts: int | None = None
    rst_ts: int | None = None
    """Time of this side's first RST."""
    rst_flags: int = 0
    rst_seq: int = 0
    rst_ack: int = 0
    rst_ttl: int = 0
    rst_ip_id: int = 0
    rst_df: bool = False
    rst_answered_syn: bool = False
    """The RST came while the peer's SYN was the last thing it sent (a SYN answered by RST)."""
    ttls: set[int] = field(default_factory=set)
    """TTLs of this side's packets sent before its first RST."""
    pkts_after_rst: int = 0
    """SYN/FIN packets this side sent after its first RST (a live peer keeps talking: injection)."""
    seq_bytes: int = 0
    """Bytes this side sent, inferred from sequence numbers (FIN/RST seq - ISN - 1), like Zeek."""
    payload_seen: int = 0
    """Payload bytes in packets that reached the tracker (0 on the prefiltered path for data)."""


@dataclass(slots=True)
class Connection:
    """One TCP connection: a 4-tuple from its first packet until it ends or goes idle.

    The first block of fields is Zeek's conn.log with Zeek's meaning.
    """

    ts: int
    """Time of the first packet, microseconds."""
    uid: str
    """Unique id of the connection (stable for a given capture)."""
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    duration: int
    """Microseconds from the first to the last packet."""
    orig_bytes: int
    """Payload bytes the originator sent, from sequence numbers (can be wrong, as Zeek warns)."""
    resp_bytes: int
    conn_state: str
    """Zeek's conn_state: S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR OTH."""
    history: str
    """Zeek's history letters (upper case: originator)."""
    orig_pkts: int
    orig_ip_bytes: int
    resp_pkts: int
    resp_ip_bytes: int
    iface: str | None
    """Interface of the first packet, when known."""
    version: int
    last_ts: int
    """Time of the last packet, microseconds."""
    orig: Side
    resp: Side
    unreachable: Unreachable | None = None
    """An ICMP unreachable that quoted this connection's SYN."""
    evidence: list[Evidence] = field(default_factory=list)
    """Up to a few control packets (first SYN, first SYN-ACK, first RST of each side, ICMP)."""


@dataclass(slots=True)
class Finding:
    """One diagnosed problem: a kind, where, how much, why, and what to do."""

    kind: str
    """One of KINDS (stable strings)."""
    server: str | None
    """Server address (the side that was connected to), or None for a scanner finding."""
    ports: list[int]
    """Server port(s); one unless the kind spread over many ports of one server."""
    count: int
    """Failed connections (or packets for 'injected') behind this finding."""
    rate: float
    """Failures per second over the observed window."""
    first_ts: int
    last_ts: int
    clients: list[str]
    """Client addresses (most frequent first)."""
    ifaces: list[str]
    """Interfaces where it was seen (empty when the capture does not say)."""
    summary: str
    """One paragraph a person can act on."""
    next_steps: list[str]
    details: dict[str, object] = field(default_factory=dict)
    """Kind-specific facts (who reset, bytes before reset, TTLs, ICMP type...)."""
    evidence: list[Evidence] = field(default_factory=list)
    """1-3 packets, printed like tcpdump -n -v."""


KINDS = (
    "refused",
    "listen-overflow",
    "firewall-reject",
    "timeout",
    "abort",
    "stale",
    "scan",
    "injected",
    "half-open",
    "unreachable",
    "local",
)


# --------------------------------------------------------------------------- live host


@dataclass(slots=True)
class Process:
    """A process on this host, as /proc and psutil describe it at lookup time."""

    pid: int
    name: str
    """Kernel comm (15 bytes at most; what tracepoints print)."""
    cmdline: list[str]
    """argv; empty for kernel threads, zombies and processes we may not read."""
    uid: int | None
    """Real uid; None when it could not be read."""
    user: str | None
    """User name of *uid*; None when the uid has no passwd entry."""
    unit: str | None
    """systemd unit from /proc/PID/cgroup (e.g. nginx.service); None outside systemd."""
    container: str | None
    """runtime:id from /proc/PID/cgroup (docker:, containerd:, cri-o:, podman:, lxc:)."""
    cgroup: str | None
    """The cgroup path the unit/container was read from (v2 path, else name=systemd)."""
    netns: int | None
    """Inode of /proc/PID/ns/net: which network namespace the process lives in."""


@dataclass(slots=True)
class SockInfo:
    """One TCP socket of the current network namespace (netlink sock_diag or /proc/net/tcp)."""

    version: int
    """IP version: 4 or 6."""
    state: str
    """Kernel TCP state name: LISTEN, SYN_SENT, ESTABLISHED, TIME_WAIT ..."""
    src: str
    """Local address, textual (an IPv6 socket's IPv4-mapped address as plain IPv4)."""
    sport: int
    dst: str
    """Remote address (:: / 0.0.0.0 for a listener)."""
    dport: int
    inode: int
    """Socket inode (the N of socket:[N] in /proc/PID/fd); 0 for TIME_WAIT/SYN_RECV."""
    uid: int
    """Owner uid of the socket."""
    cookie: int | None
    """Kernel socket cookie (what tcp tracepoints and BPF see); None from /proc/net/tcp."""
    rqueue: int
    """LISTEN: accept queue length (connections waiting for accept()); else unread bytes."""
    wqueue: int | None
    """LISTEN: backlog (sk_max_ack_backlog; None from /proc/net/tcp); else unsent bytes."""
    v6only: bool | None = None
    """IPv6 sockets: IPV6_V6ONLY (False: a [::] listener also takes IPv4). None otherwise."""


@dataclass(slots=True)
class Listener:
    """A listening TCP socket and the processes holding it."""

    version: int
    addr: str
    """Bound address (0.0.0.0 / :: for any)."""
    port: int
    inode: int
    uid: int
    cookie: int | None
    accept_queue: int
    """Connections completed by the kernel and not yet accept()ed."""
    backlog: int | None
    """listen() backlog as the kernel clamped it (somaxconn); the queue holds backlog + 1.
    None when read from /proc/net/tcp, which does not show it."""
    processes: list[Process] = field(default_factory=list)
    """Every process with the socket in its fd table (forked workers share one)."""
    v6only: bool | None = None
    """IPv6 listeners: IPV6_V6ONLY (False: [::] also accepts IPv4). None otherwise."""


@dataclass(slots=True)
class ExpectedListener:
    """A systemd unit that says it should listen on a port."""

    unit: str
    """Unit name, e.g. metrics-push.socket."""
    path: str
    """The unit file (or drop-in) that says so."""
    port: int
    address: str | None
    """Bind address from ListenStream= (None: all addresses)."""
    directive: str
    """The line that matched, e.g. ListenStream=127.0.0.1:7211."""
    service: str | None
    """For a .socket unit: the service it starts (Service= or the same name)."""
    guess: bool
    """True when only a .service's ExecStart=/Environment= mentions the port."""


@dataclass(slots=True)
class KernelEvent:
    """One tracepoint hit, decoded (sources/kernel.py).

    The task fields (pid, tid, comm) name whoever the CPU was running: meaningful in
    process context (connect(), close(), the syscall events), usually an unrelated
    task or ksoftirqd when ``context`` is ``softirq``.  Addresses are the socket's
    view: for ``send_reset`` saddr is the side that sends the RST.
    """

    ts: int
    """Microseconds since the epoch (trace clock 'mono' plus an offset measured at start)."""
    event: str
    """set_state, send_reset, receive_reset, kfree_skb, connect, socket, accept."""
    pid: int
    """Process id (thread group) of the running task; 0 for the idle task."""
    tid: int
    """Thread id of the running task (the tracepoint's common_pid)."""
    comm: str
    """Task name as the kernel last saw it; '<...>' when unknown."""
    context: str
    """'process', 'softirq' or 'irq': whether pid/comm describe the socket's user."""
    cpu: int
    family: int | None = None
    """IP version 4 or 6, when the event says."""
    saddr: str | None = None
    sport: int | None = None
    daddr: str | None = None
    """Destination; None when unknown (e.g. connect() failing before routing)."""
    dport: int | None = None
    protocol: str | None = None
    """'tcp', 'mptcp', 'sctp' for socket events; None when the event does not say."""
    oldstate: str | None = None
    """set_state: TCP state names without the TCP_ prefix (CLOSE, SYN_SENT, ...)."""
    newstate: str | None = None
    state: str | None = None
    """send_reset: state of the socket that sent the RST; None when there was no socket."""
    reason: str | None = None
    """send_reset's sk_rst_reason or kfree_skb's skb_drop_reason, by its kernel name."""
    sock_cookie: int | None = None
    """receive_reset: the socket cookie (as sock_diag reports it)."""
    skaddr: int | None = None
    """Kernel address of the socket (kfree_skb: the receiving one); joins one socket's events."""
    ret: int | None = None
    """Syscall events: the return value (negative errno)."""
    errno: str | None = None
    """Syscall events: errno name of ret (EADDRNOTAVAIL, EMFILE...)."""
    fd: int | None = None
    """connect: the socket's file descriptor in that process."""
    netns: int | None = None
    """Inode of /proc/PID/ns/net for process-context events of a still-running task (which
    namespace the socket lives in; tracepoints carry none); None otherwise."""
