"""Command line: parse, call, render. No diagnosis happens here."""

from __future__ import annotations

import os
import sys

import click

from rstrace import __version__

EXIT_OK, EXIT_FAILURES, EXIT_ERROR = 0, 1, 2


class _Group(click.Group):
    def main(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        # One-line errors, exit 2, never a traceback (click's own usage errors also exit 2).
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            click.echo("rstrace: interrupted", err=True)
            sys.exit(130)
        except click.ClickException as e:
            click.echo(f"rstrace: error: {e.format_message()}", err=True)
            sys.exit(EXIT_ERROR)
        except BrokenPipeError:
            sys.exit(EXIT_OK)
        except Exception as e:  # a bug: still one line, and a way to see more
            if os.environ.get("RSTRACE_DEBUG"):
                raise
            click.echo(
                f"rstrace: internal error: {type(e).__name__}: {e} "
                "(run with RSTRACE_DEBUG=1 for the traceback, and please report it)",
                err=True,
            )
            sys.exit(EXIT_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rstrace")
def main() -> None:
    """Find failed TCP connections and the RST packets behind them:
    which process, which port, and why."""


ANALYZE_EXAMPLES = """
\b
examples:
  rstrace analyze capture.pcap              # findings, worst first
  rstrace analyze lo.pcapng eth0.pcap.gz    # several files are one capture
  tcpdump -i any -w - | rstrace analyze -   # from a pipe
  rstrace analyze --json capture.pcap       # stable JSON (schema rstrace.analyze/1)
  rstrace analyze --format zeek-json f.pcap # one Zeek conn.log object per connection
  rstrace analyze --connections f.pcap      # table of the failed connections
  rstrace analyze --exit-code f.pcap        # exit 1 when failures were found
"""


@main.command(epilog=ANALYZE_EXAMPLES)
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--json", "as_json", is_flag=True, help="Findings as JSON (schema rstrace.analyze/1)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "zeek-json"]),
    default="text",
    help="text (default), json, or zeek-json: one conn.log object per connection.",
)
@click.option("--connections", is_flag=True, help="Print a table of the failed connections.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when failed connections were found.")
@click.option(
    "--verify-checksums",
    is_flag=True,
    help="Drop segments with bad TCP checksums (default: ignore checksums, like zeek -C; "
    "locally sent packets carry unfinished checksums).",
)
@click.option("--top", default=20, show_default=True, help="Findings shown in text output.")
@click.option(
    "--no-prefilter",
    is_flag=True,
    hidden=True,
    help="Decode every packet in Python (slow; for tests of the BPF prefilter).",
)
@click.option("--batch-size", default=4096, hidden=True, type=click.IntRange(1, 1 << 20))
def analyze(
    files: tuple[str, ...],
    as_json: bool,
    fmt: str,
    connections: bool,
    exit_code: bool,
    verify_checksums: bool,
    top: int,
    no_prefilter: bool,
    batch_size: int,
) -> None:
    """Diagnose failed TCP connections and RSTs in pcap/pcapng FILES (or - for stdin).

    Reads pcap (micro/nanosecond, either byte order), pcapng (several interfaces),
    gzip-compressed captures; Ethernet (VLAN), Linux cooked (SLL, SLL2), raw IP,
    BSD loopback.
    """
    from rstrace.analyze import analyze_files
    from rstrace.diagnose import Verdict
    from rstrace.model import KINDS, Connection
    from rstrace.sources.capfile import CaptureError

    if as_json:
        fmt = "json"
    failed_conns: list[tuple[Connection, Verdict]] = []
    out = sys.stdout

    def on_conn(c: Connection, verdict: Verdict | None) -> None:
        if fmt == "zeek-json":
            from rstrace.render.zeek import zeek_line

            out.write(zeek_line(c) + "\n")
        if connections and verdict is not None:
            failed_conns.append((c, verdict))

    mode = "none" if no_prefilter else ("all" if fmt == "zeek-json" or connections else "control")
    want_conns = fmt == "zeek-json" or connections
    try:
        res = analyze_files(
            list(files),
            mode=mode,
            batch_size=batch_size,
            verify_checksums=verify_checksums,
            on_connection=on_conn if want_conns else None,
        )
    except CaptureError as e:
        click.echo(f"rstrace: error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    if fmt == "json":
        from rstrace.render.json import render_json

        out.write(render_json(res) + "\n")
    elif fmt == "text":
        if connections:
            from rstrace.render.text import render_connections

            kinds = [(c, res.final_kind(v)) for c, v in failed_conns]
            render_connections([(c, k) for c, k in kinds if k in KINDS], out)
        else:
            from rstrace.render.text import render_text

            render_text(res, out, top=top)
    for w in res.warnings:
        click.echo(f"rstrace: warning: {w}", err=True)
    if exit_code and res.failed:
        sys.exit(EXIT_FAILURES)


STATS_EXAMPLES = """
\b
examples:
  rstrace stats                        # failure counters over 1 s, with meanings
  rstrace stats -i 5 -c 0              # every 5 s until Ctrl-C (like vmstat)
  rstrace stats --changed -c 0         # only the counters that moved
  rstrace stats --all                  # every counter of snmp, netstat, snmp6
  rstrace stats --kernel               # the kernel function behind each counter
  rstrace stats --netns web            # inside network namespace web (root)
  rstrace stats --json -c 10           # JSON Lines, schema rstrace.stats/1
"""


@main.command(epilog=STATS_EXAMPLES)
@click.option(
    "-i",
    "--interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds between the two readings of each interval.",
)
@click.option(
    "-c",
    "--count",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Intervals to print; 0: until Ctrl-C.",
)
@click.option("--all", "every", is_flag=True, help="Every counter, not only failure-related.")
@click.option("--changed", is_flag=True, help="Only counters that moved in the interval.")
@click.option("--kernel", is_flag=True, help="Name the kernel function behind each counter.")
@click.option("--netns", metavar="NAME", help="Read network namespace NAME (/run/netns/NAME).")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per interval (rstrace.stats/1)."
)
def stats(
    interval: float,
    count: int,
    every: bool,
    changed: bool,
    kernel: bool,
    netns: str | None,
    as_json: bool,
) -> None:
    """TCP counters of /proc/net/snmp, netstat and snmp6: values, rates per second,
    and what each means as Linux counts it.

    Tcp counts IPv4 and IPv6 together. AttemptFails is this host's own connect()s
    that were refused or timed out (RFC 1213's wording is not what Linux does).
    """
    import shutil
    import time

    from rstrace.render.stats import render_stats_json, render_stats_text
    from rstrace.sources import host
    from rstrace.sources import netns as ns
    from rstrace.stats import take_sample

    if netns:
        try:
            ns.enter(netns)
        except ns.NetnsError as e:
            raise click.ClickException(str(e)) from None
    missing = host.conntrack_missing()
    prev = take_sample()
    done = 0
    try:
        while count == 0 or done < count:
            time.sleep(max(0.0, prev.mono + interval - time.monotonic()))
            cur = take_sample()
            last = count != 0 and done + 1 == count
            kw = dict(sysctls=host.read_sysctls(), netns=netns, every=every,
                      conntrack_missing=missing)  # fmt: skip
            if as_json:
                click.echo(render_stats_json(prev, cur, **kw))
            else:
                text = render_stats_text(
                    prev, cur, changed=changed, kernel=kernel, footer=last or count == 0,
                    columns=shutil.get_terminal_size((120, 24)).columns, **kw,
                )  # fmt: skip
                click.echo(text + ("" if last else "\n"), nl=False)
            sys.stdout.flush()
            prev, done = cur, done + 1
    except KeyboardInterrupt:  # Ctrl-C ends a follow run like vmstat's: not an error
        pass


SOCKETS_EXAMPLES = """
\b
examples:
  rstrace sockets                  # listeners: queue/backlog, process, unit, container
  rstrace sockets --all            # every TCP socket with its state and owner
  rstrace sockets --port 7211      # who listens on 7211, or who should (exit 1: nobody)
  rstrace sockets --json           # the records as JSON (schema rstrace.sockets/1)
  rstrace sockets --netns web      # inside network namespace web (root)
"""


@main.command(epilog=SOCKETS_EXAMPLES)
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Only this port; say who should listen."
)
@click.option("--all", "all_", is_flag=True, help="Every TCP socket, not only listeners.")
@click.option("--json", "as_json", is_flag=True, help="JSON (schema rstrace.sockets/1).")
@click.option(
    "--unit-dir",
    "unit_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Read systemd units from DIR (repeatable) instead of the standard directories.",
)
@click.option("--netns", metavar="NAME", help="Read network namespace NAME (/run/netns/NAME).")
def sockets(
    port: int | None, all_: bool, as_json: bool, unit_dirs: tuple[str, ...], netns: str | None
) -> None:
    """TCP listeners and sockets of this network namespace and the processes behind them.

    Accept-queue length and backlog come from netlink sock_diag (like `ss -ltn`); the
    owning process, its systemd unit and container from /proc. Without root, processes
    of other users are not shown.
    """
    import dataclasses
    import json

    from rstrace.render import sockets as render
    from rstrace.sources import netns as ns
    from rstrace.sources import sockets as src
    from rstrace.sources.units import UNIT_DIRS

    if netns:
        try:
            ns.enter(netns)
        except ns.NetnsError as e:
            raise click.ClickException(str(e)) from None
    listeners = src.list_listeners()
    if port is not None:
        listeners = [x for x in listeners if x.port == port]
    socks, owners = [], {}
    if all_:
        socks = [s for s in src.tcp_sockets() if port in (None, s.sport, s.dport)]
        owners = src.owners_by_inode(inodes={s.inode for s in socks if s.inode})
    expected, service = [], None
    if port is not None:
        expected = src.expected_listeners(port, unit_dirs or UNIT_DIRS)
        service = src.service_name(port)
    if as_json:
        doc: dict[str, object] = {
            "schema": "rstrace.sockets/1",
            "listeners": [dataclasses.asdict(x) for x in listeners],
        }
        if all_:
            doc["sockets"] = [
                {
                    **dataclasses.asdict(s),
                    "processes": [dataclasses.asdict(p) for p in owners.get(s.inode, [])],
                }
                for s in socks
            ]
        if port is not None:
            doc["port"] = {
                "port": port,
                "service": service,
                "expected": [dataclasses.asdict(e) for e in expected],
            }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif all_:
        render.render_sockets(socks, owners, sys.stdout)
    elif port is not None:
        render.render_port(port, listeners, expected, service, sys.stdout)
    else:
        render.render_listeners(listeners, sys.stdout)
    if os.geteuid() != 0:
        click.echo("rstrace: note: not root: processes of other users are not shown", err=True)
    if port is not None and not listeners:
        sys.exit(EXIT_FAILURES)


CAPTURE_EXAMPLES = """
\b
examples:
  rstrace capture                        # RSTs on every interface, lo included
  rstrace capture --handshake            # and the SYNs and SYN-ACKs around them
  rstrace capture -i lo -i eth0 -c 10    # two interfaces, stop after 10 packets
  rstrace capture --duration 60 -w rst.pcapng   # one minute into pcapng (named interfaces)
  rstrace capture -w rst.pcapng --print  # write and print
  rstrace capture --json | jq .dport     # one JSON object per packet
"""


@main.command(epilog=CAPTURE_EXAMPLES)
@click.option(
    "-i",
    "--interface",
    "interfaces",
    multiple=True,
    metavar="IFACE",
    help="Capture only on IFACE (repeatable; default or `any`: every interface, "
    "and those that appear while it runs).",
)
@click.option("--handshake", is_flag=True, help="Also show SYNs and SYN-ACKs.")
@click.option(
    "-c", "--count", type=click.IntRange(min=1), metavar="N", help="Stop after N packets."
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop after SECONDS.",
)
@click.option(
    "-w",
    "--write",
    "write_path",
    metavar="FILE",
    help="Write the packets to FILE as pcapng, one named interface block per interface "
    "(- for stdout). Lines are not printed unless --print.",
)
@click.option("--print", "print_too", is_flag=True, help="With -w: print the lines too.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per packet.")
def capture(
    interfaces: tuple[str, ...],
    handshake: bool,
    count: int | None,
    duration: float | None,
    write_path: str | None,
    print_too: bool,
    as_json: bool,
) -> None:
    """Print TCP RSTs live on every interface at once, loopback included, each line in
    tcpdump -n -v form with the interface name after the timestamp.

    Needs root or CAP_NET_RAW. Ctrl-C or SIGTERM stop it and print, per interface,
    the packets captured and those the kernel dropped.
    """
    from rstrace.capture import CaptureOptions, run_capture
    from rstrace.sources.live import LiveCaptureError

    names = [i for i in interfaces if i != "any"] if interfaces else []
    if write_path == "-" and (print_too or as_json):
        raise click.UsageError("-w - writes the capture to stdout: --print/--json cannot")
    stream = None
    if write_path is not None:
        try:
            stream = sys.stdout.buffer if write_path == "-" else open(write_path, "wb")  # noqa: SIM115
        except OSError as e:
            raise click.ClickException(f"cannot write {write_path}: {e.strerror}") from None
    opts = CaptureOptions(
        interfaces=names or None,
        handshake=handshake,
        count=count,
        duration=duration,
        write=stream,
        lines=write_path is None or print_too,
        as_json=as_json,
    )
    try:
        res = run_capture(opts, sys.stdout, sys.stderr)
    except LiveCaptureError as e:
        raise click.ClickException(str(e)) from None
    finally:
        if stream is not None and stream is not sys.stdout.buffer:
            stream.close()
    for name in sorted(res.stats):
        st = res.stats[name]
        n = res.kept.get(name, 0)
        click.echo(
            f"{name}: {n} packet{'' if n == 1 else 's'} captured, {st.dropped} dropped by kernel",
            err=True,
        )


DIAGNOSE_EXAMPLES = """
\b
examples:
  rstrace diagnose                      # watch this host 10 s, every interface
  rstrace diagnose --duration 60        # a longer window (Ctrl-C ends it early)
  rstrace diagnose -i lo -i eth0        # only these interfaces
  rstrace diagnose --netns blue         # inside network namespace 'blue'
  rstrace diagnose --json               # JSON (schema rstrace.diagnose/1)
  rstrace diagnose --exit-code          # exit 1 when failed connections were found
"""


@main.command(epilog=DIAGNOSE_EXAMPLES)
@click.option("--duration", default=10.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds to watch (Ctrl-C ends the window early).")  # fmt: skip
@click.option("-i", "--interface", "interfaces", multiple=True,
              help="Capture only on this interface (repeatable); default: all.")  # fmt: skip
@click.option("--netns", help="Diagnose inside this network namespace (/run/netns/NAME).")
@click.option("--json", "as_json", is_flag=True, help="JSON (schema rstrace.diagnose/1).")
@click.option("--no-kernel", is_flag=True, help="Do not use tracefs (no kernel reasons).")
@click.option("--no-capture", is_flag=True,
              help="No packet capture (kernel events, sockets and counters only).")  # fmt: skip
@click.option("--no-syscalls", is_flag=True,
              help="Do not trace connect()/socket()/accept() errors (kind 'local').")  # fmt: skip
@click.option("--top", default=20, show_default=True, help="Findings shown in text output.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when failed connections were found.")
def diagnose(
    duration: float,
    interfaces: tuple[str, ...],
    netns: str | None,
    as_json: bool,
    no_kernel: bool,
    no_capture: bool,
    no_syscalls: bool,
    top: int,
    exit_code: bool,
) -> None:
    """Watch this host for a window and say which connections fail, who makes
    them, who answers, and why.

    Runs together: packet capture on every interface (control packets only),
    kernel events through tracefs (who called connect(), why the kernel reset or
    dropped), the TCP counters, listeners and their processes (sock_diag, /proc),
    and the firewall's rule counters. Needs root for capture and tracefs; without
    them it runs with what it can see and says what it could not.
    """
    import signal

    from rstrace.investigate import investigate
    from rstrace.sources.netns import NetnsError

    stopping = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        if stopping["now"]:
            raise KeyboardInterrupt
        stopping["now"] = True

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    progress = _progress(duration) if sys.stderr.isatty() and not as_json else None
    try:
        inv = investigate(
            duration,
            interfaces=list(interfaces) or None,
            netns=netns,
            kernel=not no_kernel,
            capture=not no_capture,
            syscalls=not no_syscalls,
            progress=progress,
            should_stop=lambda: stopping["now"],
            on_ready=lambda ifaces, kernel: click.echo(
                f"rstrace: watching {', '.join(ifaces) or 'no interface'}"
                f"{' and kernel events' if kernel else ''} for {duration:g} s "
                "(Ctrl-C ends early)",
                err=True,
            ),
        )
    except NetnsError as e:
        raise click.ClickException(str(e)) from None
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        if progress is not None:
            progress.close()  # type: ignore[attr-defined]
    if as_json:
        from rstrace.render.diagnosis import render_diagnosis_json

        sys.stdout.write(render_diagnosis_json(inv) + "\n")
    else:
        from rstrace.render.diagnosis import render_diagnosis_text

        render_diagnosis_text(inv, sys.stdout, top=top)
    for w in inv.warnings:
        click.echo(f"rstrace: warning: {w}", err=True)
    if exit_code and inv.failed:
        sys.exit(EXIT_FAILURES)


class _progress:
    """A one-line progress indicator on stderr (a terminal only): elapsed and failures."""

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.last = -1.0

    def __call__(self, elapsed: float, failed: int) -> None:
        if elapsed - self.last < 0.25:
            return
        self.last = elapsed
        width = 30
        done = int(width * min(elapsed / self.duration, 1.0))
        sys.stderr.write(
            f"\rdiagnose [{'#' * done}{'.' * (width - done)}] "
            f"{elapsed:4.1f}/{self.duration:.0f} s, {failed} failed so far "
        )
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\r" + " " * 70 + "\r")
        sys.stderr.flush()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Both windows as JSON, one per line.")
def demo(as_json: bool) -> None:
    """Replay the case study on loopback: a client connects twice a second to a
    port where nothing listens; diagnose names it; then the missing listener
    starts and the failures stop. Needs root (capture and tracefs); cleans up
    after itself."""
    import json

    from rstrace.demo import run_demo
    from rstrace.investigate import Investigation
    from rstrace.render.diagnosis import diagnosis_dict, render_diagnosis_text

    def say(text: str) -> None:
        if not as_json:
            click.echo(text)

    def show(inv: Investigation) -> None:
        if as_json:  # one window per line
            sys.stdout.write(json.dumps(diagnosis_dict(inv)) + "\n")
        else:
            render_diagnosis_text(inv, sys.stdout)
            click.echo("")

    run_demo(say, show)
