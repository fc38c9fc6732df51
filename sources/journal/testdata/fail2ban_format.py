# Formats journal entries with fail2ban's own FilterSystemd.formatJournalEntry,
# the reference sources/journal's tests compare moat's lines against.
#
#   fail2ban_format.py raw            stdin: one JSON object per line, each
#                                     field a list of base64 values (the C
#                                     reader's form: __REALTIME_TIMESTAMP and
#                                     __MONOTONIC_TIMESTAMP as decimal text)
#   fail2ban_format.py journal MATCH  the system journal's entries MATCH
#                                     (FIELD=value) selects, read through
#                                     python-systemd as fail2ban reads them
#
# Prints one JSON object per entry: cursor, line, time (seconds).
import base64
import json
import sys

from systemd import journal
from fail2ban.server.filtersystemd import FilterSystemd


class Jail:
    """Stands in for the FilterSystemd instance: the two methods that
    formatJournalEntry calls on it besides its own, and the jail's name."""

    jailName = "test"
    getJrnEntTime = FilterSystemd.getJrnEntTime

    def getLogEncoding(self):
        return "UTF-8"


def emit(entry):
    (_, _, line), tm = FilterSystemd.formatJournalEntry(Jail(), entry)
    print(json.dumps({"cursor": entry.get("__CURSOR", ""), "line": line, "time": tm}))


# fail2ban's reader arguments (FilterSystemd._getJournalArgs).
converters = {"__CURSOR": lambda x: x}

if sys.argv[1] == "raw":
    r = journal.Reader.__new__(journal.Reader)
    r.converters = dict(journal.DEFAULT_CONVERTERS)
    r.converters.update(converters)
    for text in sys.stdin:
        raw = {}
        for k, vs in json.loads(text).items():
            vs = [base64.b64decode(v) for v in vs]
            raw[k] = vs[0] if len(vs) == 1 else vs
        # As the C reader hands them over (Reader.get_next).
        raw["__REALTIME_TIMESTAMP"] = int(raw["__REALTIME_TIMESTAMP"])
        if "__MONOTONIC_TIMESTAMP" in raw:
            raw["__MONOTONIC_TIMESTAMP"] = (int(raw["__MONOTONIC_TIMESTAMP"]), bytes(16))
        raw["__CURSOR"] = raw["__CURSOR"].decode()
        emit(r._convert_entry(raw))
else:
    r = journal.Reader(flags=journal.SYSTEM, converters=converters)
    r.add_match(sys.argv[2])
    for entry in r:
        emit(entry)
