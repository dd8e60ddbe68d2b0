"""Words for findings: the paragraph a senior engineer would write, and what to check next.

Pure text from a Finding's facts; the renderers only lay it out.
"""

from __future__ import annotations

import time

from rstrace.model import Finding

# A few well-known ports, so a refused port says what usually lives there. A fixed
# table (not /etc/services) keeps output the same on every machine.
WELL_KNOWN = {
    21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "domain", 80: "http", 110: "pop3",
    111: "sunrpc", 143: "imap", 389: "ldap", 443: "https", 445: "microsoft-ds", 465: "submissions",
    587: "submission", 636: "ldaps", 873: "rsync", 993: "imaps", 995: "pop3s", 1433: "ms-sql",
    1521: "oracle", 2049: "nfs", 2181: "zookeeper", 2379: "etcd", 3000: "grafana?",
    3306: "mysql", 3389: "rdp", 4222: "nats", 5432: "postgresql", 5672: "amqp", 6379: "redis",
    6443: "kubernetes-api", 8080: "http-alt", 8443: "https-alt", 9090: "prometheus",
    9092: "kafka", 9100: "node-exporter", 9200: "elasticsearch", 11211: "memcached",
    27017: "mongodb",
}  # fmt: skip


def port_name(port: int) -> str:
    name = WELL_KNOWN.get(port)
    return f"{port} ({name})" if name else str(port)


def hhmmss(ts_us: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts_us // 1_000_000))


def where(f: Finding) -> str:
    if f.server is None:
        return "?"
    host = f"[{f.server}]" if ":" in f.server else f.server
    if len(f.ports) == 1:
        return f"{host}:{f.ports[0]}"
    return f"{host} ({len(f.ports)} ports)"


def _top(d: object) -> str | None:
    """Most frequent value of a details counter {value: n}."""
    if not isinstance(d, dict) or not d:
        return None
    return str(max(d.items(), key=lambda kv: kv[1])[0])


def _clients(f: Finding, limit: int = 3) -> str:
    shown = ", ".join(f.clients[:limit])
    more = len(f.clients) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def _how_much(f: Finding, window_s: float) -> str:
    seen = f", seen on {', '.join(f.ifaces)}" if f.ifaces else ""
    times = "Once" if f.count == 1 else f"{f.count} times"
    return (
        f"{times} in {window_s:.0f} s ({f.rate:.2f}/s), first {hhmmss(f.first_ts)}, "
        f"last {hhmmss(f.last_ts)}{seen}"
    )


def explain(f: Finding, window_s: float) -> tuple[str, list[str]]:
    """(summary paragraph, next steps) for one finding."""
    w = where(f)
    d = f.details
    how = _how_much(f, window_s)
    port = port_name(f.ports[0]) if f.ports else "?"
    if f.kind == "refused":
        answered = _top(d.get("port_answered_others"))
        text = (
            f"{_clients(f)} tried to connect to {w} and got a reset: nothing listens on port "
            f"{port} there. {how}."
        )
        if answered:
            text += (
                " The same port answered other connection attempts in this capture, so the "
                "listener came and went, or a host firewall rejects some clients."
            )
        else:
            text += (
                " On Linux a host firewall's 'reject with tcp-reset' looks exactly like this, "
                "so check the firewall too."
            )
        steps = [
            f"On {f.server}: ss -ltnp 'sport = :{f.ports[0]}' (is anything listening?)",
            "Find what should listen there (service unit, container, config) and why it is down",
            f"Find the client: ss -tnp 'dport = :{f.ports[0]}' on {_clients(f, 1)}",
            "Rule out a host firewall: nft list ruleset | grep -i reject",
        ]
        return text, steps
    if f.kind == "firewall-reject" and d.get("firewall_rule"):
        rule = _top(d.get("firewall_rule"))
        text = (
            f"Connections from {_clients(f)} to {w} were answered by resets from this host's "
            f"firewall, not by its TCP stack: the rule {rule} counted them and no TCP socket "
            f"sent a reset. {how}."
        )
        steps = [
            f"Is the rule meant to reject port {f.ports[0]}? nft -a list ruleset",
            "If the service should be reachable, remove or narrow the rule",
        ]
        return text, steps
    if f.kind == "firewall-reject":
        rst_ttl, srv_ttl = _top(d.get("rst_ttl")), _top(d.get("server_ttl"))
        text = (
            f"Connections from {_clients(f)} to {w} were answered by a reset that the server "
            f"did not send: its TTL ({rst_ttl}) differs from the server's own packets "
            f"({srv_ttl}), so a firewall or router on the path rejects them. {how}."
        )
        steps = [
            "Look for a REJECT rule with tcp-reset on the routers/firewalls between client and "
            f"server for port {f.ports[0]}",
            "nft list ruleset / iptables -L -v -n on each hop; its counter should move",
        ]
        return text, steps
    if f.kind == "timeout":
        text = (
            f"SYNs from {_clients(f)} to {w} were never answered: no SYN-ACK, no reset, no "
            f"ICMP error. {how}. A firewall that drops, a host that is down, a full conntrack "
            "table or a route that goes nowhere all look like this."
        )
        steps = [
            f"Is {f.server} up and reachable (ping, ip route get {f.server})?",
            f"Look for a DROP rule for port {f.ports[0]}: nft list ruleset, iptables -L -v -n",
            "Check conntrack: nf_conntrack_count vs nf_conntrack_max",
        ]
        return text, steps
    if f.kind == "listen-overflow":
        text = (
            f"The listener on {w} is overwhelmed: it answers some clients, but SYNs went "
            "unanswered or its SYN-ACKs were re-sent while the client believed it was "
            f"connected. That is what a full accept queue does. {how}."
        )
        steps = [
            f"On {f.server}: ss -ltn 'sport = :{f.ports[0]}' (Recv-Q at Send-Q means the "
            "accept queue is full)",
            "nstat -az TcpExtListenOverflows TcpExtListenDrops",
            "Is the application calling accept() fast enough? Raise its backlog and "
            "net.core.somaxconn",
        ]
        return text, steps
    if f.kind == "half-open":
        text = (
            f"Handshakes to {w} were never completed: the server sent SYN-ACKs (and re-sent "
            f"them) but the clients never answered. {how}. Many distinct sources with no "
            "follow-up is a SYN flood with spoofed addresses; a few may be lost ACKs."
        )
        steps = [
            "nstat -az TcpExtSyncookiesSent TcpExtListenDrops; is net.ipv4.tcp_syncookies on?",
            f"Count SYN_RECV sockets: ss -tn state syn-recv 'sport = :{f.ports[0]}'",
        ]
        return text, steps
    if f.kind == "abort":
        who = _top(d.get("reset_by")) or "an endpoint"
        after_close = _top(d.get("after_close")) == "True"
        sent, got = _top(d.get("bytes_by_resetter")), _top(d.get("bytes_by_peer"))
        text = (
            f"Established connections between {_clients(f)} and {w} were reset by the {who}"
            + (f" (it had sent {sent} bytes and received {got})" if sent is not None else "")
            + (
                ", after it had closed: data arrived for a socket the application had closed"
                if after_close
                else ""
            )
            + f". {how}. An application that closes with unread data or with SO_LINGER 0, a "
            "crash, or a timeout in the application sends resets like this."
        )
        steps = [
            f"Which side resets ({who}): check its application logs at {hhmmss(f.first_ts)}",
            "nstat -az TcpExtTCPAbortOnData TcpExtTCPAbortOnClose TcpExtTCPAbortOnLinger",
        ]
        return text, steps
    if f.kind == "stale":
        who = _top(d.get("reset_by")) or "an endpoint"
        text = (
            f"Packets for connections between {_clients(f)} and {w} were answered by a bare "
            f"reset from the {who}: it no longer knew the connection (restart, failover, NAT "
            f"or conntrack state lost) while the other side still used it. {how}."
        )
        steps = [
            f"Did the {who} restart or fail over at {hhmmss(f.first_ts)}?",
            "Clients should reconnect on reset; check keepalive and pool idle timeouts",
        ]
        return text, steps
    if f.kind == "scan":
        targets = d.get("targets") or []
        n_ports = len(f.ports)
        text = (
            f"{f.clients[0]} probed {n_ports} ports on {', '.join(map(str, targets[:3]))}"
            f"{' and more hosts' if len(targets) > 3 else ''}, most of them failing: a port "
            f"scan. {how}."
        )
        steps = [
            f"Who is {f.clients[0]}? An inventory or monitoring tool, or an intruder?",
            "If unexpected, block it and check the targets' logs",
        ]
        return text, steps
    if f.kind == "injected":
        who = _top(d.get("claimed_sender")) or "peer"
        rst_ttl, peer_ttls = _top(d.get("rst_ttl")), _top(d.get("peer_ttls"))
        kept = _top(d.get("sender_kept_talking")) == "True"
        why = []
        if rst_ttl and peer_ttls and rst_ttl not in peer_ttls.split(","):
            why.append(f"its TTL is {rst_ttl} while the {who}'s own packets have {peer_ttls}")
        if kept:
            why.append(f"the {who} kept sending after it")
        text = (
            f"Connections between {_clients(f)} and {w} were reset by packets that claim to "
            f"come from the {who} but do not look like it: {' and '.join(why) or 'see below'}. "
            f"Something on the path forged them (a middlebox, an IPS, an attacker). {how}."
        )
        steps = [
            "Capture on both ends: the real peer will not show the RST leaving",
            "Look for an IPS/middlebox that resets connections on the path",
        ]
        return text, steps
    if f.kind == "unreachable":
        frm = _top(d.get("icmp_from"))
        text = (
            f"SYNs from {_clients(f)} to {w} were answered by ICMP destination unreachable"
            f"{f' from {frm}' if frm else ''}: a firewall rejecting with an ICMP error, or a "
            f"router with no route. {how}."
        )
        steps = [
            f"If {frm} is a router: check its routes and filters for {f.server}",
            "Look for REJECT rules with icmp(v6) types: nft list ruleset",
        ]
        return text, steps
    if f.kind == "local":
        err = _top(d.get("errno")) or "an error"
        meaning = LOCAL_ERRORS.get(err, "the kernel refused the call")
        text = (
            f"connect() (or socket()/accept()) failed with {err} before any packet left "
            f"this host: {meaning}. {how}."
        )
        steps = LOCAL_STEPS.get(err, ["strace -f -e trace=network -p PID"])
        return text, steps
    return f"{f.kind} at {w}. {how}.", []


LOCAL_ERRORS = {
    "EADDRNOTAVAIL": "no free local port (or the source address is gone)",
    "EADDRINUSE": "the local address and port it bound are taken",
    "ENOBUFS": "the kernel had no buffer memory for the socket",
    "ENOMEM": "the kernel had no memory for the socket",
    "ENETUNREACH": "no route to that network",
    "EHOSTUNREACH": "no route to that host",
    "EMFILE": "the process has no free file descriptor (RLIMIT_NOFILE)",
    "ENFILE": "the system has no free file descriptor (fs.file-max)",
    "EACCES": "permission denied (a firewall in OUTPUT, or a privileged port)",
    "EPERM": "operation not permitted (a firewall rule in OUTPUT rejects it)",
}
LOCAL_STEPS = {
    "EADDRNOTAVAIL": [
        "sysctl net.ipv4.ip_local_port_range; ss -tan state time-wait | wc -l",
        "Reuse connections (keep-alive, pools) instead of one per request",
    ],
    "ENETUNREACH": ["ip route get DESTINATION; is the default route there?"],
    "EHOSTUNREACH": ["ip route get DESTINATION; ip neigh"],
    "EMFILE": ["ls /proc/PID/fd | wc -l; grep 'open files' /proc/PID/limits"],
    "ENFILE": ["cat /proc/sys/fs/file-nr /proc/sys/fs/file-max"],
}
