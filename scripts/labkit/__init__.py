"""labkit: the helpers shared by the Python tooling of scripts/ and loadtest/.

Python 3.11 standard library only; everything talks to loopback addresses only.

    base      SetupError (a problem the user must fix: exit 2) and log() (progress on stderr)
    binaries  locating the project's binaries ($CARGO_TARGET_DIR/<profile>/...) and system tools
    procfs    /proc readers: process trees, CPU time, VmRSS / VmHWM
    procs     the one process supervisor: children with logs in files, log lines awaited with a
              deadline, stopped by PID (SIGTERM, then SIGKILL) with their exit codes reported
    ports     addresses as children report them, closed ports, ports picked by binding
    services  starting children: our binaries on port 0 (they report what they bound), others
              on a picked port with a bounded retry when another process takes it first
    nginx     NGINX from a config template, its temp paths for a non-root run
    templates @NAME@ placeholders in config templates
    waiting   polling with a deadline (instead of fixed sleeps)
    http      http_get / http_post / request with timeouts
    metrics   Prometheus text format (the gateway's /metrics) and Prometheus' query API
    jwt       HS256 tokens

Scripts under scripts/ import it directly (their own directory is first on sys.path). Scripts
under loadtest/ put <repo>/scripts on sys.path first:

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

a two-line convention rather than an installed package, because the tooling runs with the
system python3 from a plain checkout (no pip install, no virtualenv).
"""
