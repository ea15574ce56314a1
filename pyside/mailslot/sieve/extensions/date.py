"""date (RFC 5260): the date and currentdate tests.

date [:zone z / :originalzone] [COMPARATOR] [MATCH-TYPE] <header> <date-part>
<key-list>; currentdate [:zone z] ... <date-part> <key-list>. The header value is
parsed as an RFC 5322 date (after the last ';' when there is one, as in
Received:), only its first occurrence (or the one :index picks); the result is
converted to the zone asked for (default: the server's local zone) and the
date part extracted: year month day date julian hour minute second time
iso8601 std11 zone weekday. currentdate uses the time the run started.
"""

import time

from .. import syntax as S
from ..interpreter import TESTS
from ..diagnostics import sanitize
from ..match import match
from ..defs import CommandDef, TagDef
from .core import add_header_options, link_match_tags, key_list_and_spec, verify_header_names

PARTS = ("year", "month", "day", "date", "julian", "hour", "minute", "second",
         "time", "iso8601", "std11", "zone", "weekday")
OPT_DATE_ZONE = 12

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
           "nov", "dec")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                "Nov", "Dec")
_WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
# RFC 5322 4.3 obsolete zones (military zones count as -0000, i.e. 0).
_ZONES = {"ut": 0, "gmt": 0, "z": 0, "est": -300, "edt": -240, "cst": -360,
          "cdt": -300, "mst": -420, "mdt": -360, "pst": -480, "pdt": -420}


def parse_zone(text):
    """"+hhmm" / "-hhmm" -> minutes east of UTC, else None (Pigeonhole's check)."""
    if len(text) == 5 and text[0] in "+-" and text[1:].isdigit() and text[1:].isascii():
        minutes = int(text[1:3]) * 60 + int(text[3:5])
        return minutes if text[0] == "+" else -minutes
    return None


def _tokens(text):
    """Split a date into words, skipping comments and separators like Dovecot."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n,":
            i += 1
            continue
        if ch == "(":
            depth = 0
            while i < n:
                if text[i] == "\\":
                    i += 2
                    continue
                if text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
            continue
        j = i
        while j < n and text[j] not in " \t\r\n,(":
            j += 1
        out.append(text[i:j])
        i = j
    return out


def parse_date(text):
    """RFC 5322 date-time -> (UTC timestamp, zone minutes) or None."""
    words = _tokens(text)
    if not words:
        return None
    if words[0][:3].lower() in ("sun", "mon", "tue", "wed", "thu", "fri", "sat") \
            and not words[0][:1].isdigit():
        words = words[1:]
    if len(words) < 4:
        return None
    day, month, year, clock = words[0], words[1], words[2], words[3]
    if not day.isdigit() or len(day) > 2:
        return None
    mon = month[:3].lower()
    if mon not in _MONTHS or len(month) != 3:
        return None
    if not year.isdigit() or len(year) not in (2, 3, 4):
        return None
    y = int(year)
    if len(year) == 2:
        y += 2000 if y < 70 else 1900
    elif len(year) == 3:
        y += 1900
    parts = clock.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) <= 2 for p in parts):
        return None
    hh, mm = int(parts[0]), int(parts[1])
    ss = int(parts[2]) if len(parts) == 3 else 0
    zone = 0
    if len(words) > 4:
        z = words[4]
        if z[:1] in "+-" and len(z) == 5 and z[1:].isdigit():
            zone = parse_zone(z)
        else:
            zone = _ZONES.get(z.lower(), 0)
    d = int(day)
    m = _MONTHS.index(mon) + 1
    if not (1 <= d <= 31 and hh < 24 and mm < 60 and ss <= 60):
        return None
    import calendar
    try:
        ts = calendar.timegm((y, m, d, hh, mm, ss, 0, 0, 0))
    except (OverflowError, ValueError):
        return None
    return ts - zone * 60, zone


def local_zone(ts):
    return time.localtime(ts).tm_gmtoff // 60


def _zone_text(zone):
    sign = "-" if zone < 0 else "+"
    zone = abs(zone)
    return "%s%02d%02d" % (sign, zone // 60, zone % 60)


def date_part(ts, zone, part):
    tm = time.gmtime(ts + zone * 60)
    y, mo, d = tm.tm_year, tm.tm_mon, tm.tm_mday
    wday = (tm.tm_wday + 1) % 7   # struct tm: 0 is Sunday
    if part == "year":
        return "%04d" % y
    if part == "month":
        return "%02d" % mo
    if part == "day":
        return "%02d" % d
    if part == "date":
        return "%04d-%02d-%02d" % (y, mo, d)
    if part == "julian":
        yy, mm = (y, mo - 3) if mo > 2 else (y - 1, mo + 9)
        c = yy // 100
        ya = yy - c * 100
        jd = c * 146097 // 4 + ya * 1461 // 4 + (mm * 153 + 2) // 5 + d + 1721119
        return "%d" % (jd - 2400001)
    if part == "hour":
        return "%02d" % tm.tm_hour
    if part == "minute":
        return "%02d" % tm.tm_min
    if part == "second":
        return "%02d" % tm.tm_sec
    if part == "time":
        return "%02d:%02d:%02d" % (tm.tm_hour, tm.tm_min, tm.tm_sec)
    if part == "iso8601":
        z = "Z" if zone == 0 else "%s%02d:%02d" % ("-" if zone < 0 else "+",
                                                   abs(zone) // 60, abs(zone) % 60)
        return "%04d-%02d-%02dT%02d:%02d:%02d%s" % (y, mo, d, tm.tm_hour, tm.tm_min,
                                                    tm.tm_sec, z)
    if part == "std11":
        return "%s, %02d %s %04d %02d:%02d:%02d %s" % (
            _WEEKDAYS[wday], d, _MONTH_NAMES[mo - 1], y, tm.tm_hour, tm.tm_min,
            tm.tm_sec, _zone_text(zone))
    if part == "zone":
        return _zone_text(zone)
    if part == "weekday":
        return "%d" % wday
    return None


class ZoneTag(TagDef):
    id_code = OPT_DATE_ZONE

    def __init__(self, ident):
        self.identifier = ident

    def validate(self, v, node, args, i):
        if node.tags.get("zone_set"):
            if node.name.lower() == "date":
                v.error(args[i].line, "multiple :zone or :originalzone arguments "
                        "specified for the currentdate test")
            else:
                v.error(args[i].line, "multiple :zone arguments specified for the "
                        "currentdate test")
            return None
        node.tags["zone_set"] = True
        if self.identifier == "originalzone":
            node.tags["zone"] = None
            return i + 1
        tag = args[i]
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, tag, param, None, 0, S.STRING):
            return None
        value = v.activate(node, param)
        if value is None:
            return None
        if isinstance(value, str) and parse_zone(value) is None:
            v.warning(param.line, "specified :zone argument '%s' is not a valid "
                      "timezone" % sanitize(value, 40))
        node.tags["zone"] = value
        return i + 2


class DateTest(CommandDef):
    is_test = True

    def __init__(self, name):
        self.name = name
        self.positional = 3 if name == "date" else 2

    def registered(self, v, reg):
        link_match_tags(v, reg)
        v.register_tag(reg, ZoneTag("zone"))
        if self.name == "date":
            v.register_tag(reg, ZoneTag("originalzone"))

    def validate(self, v, node):
        args = node.positional
        offset = 0
        header = None
        if self.name == "date":
            offset = 1
            arg = args[0]
            header = v.positional_value(node, arg, "header name", 1, S.STRING)
            if header is None:
                return False
            verify_header_names(v, arg, [header])
        arg = args[offset]
        part = v.positional_value(node, arg, "date part", offset + 1, S.STRING)
        if part is None:
            return False
        if isinstance(part, str) and part.lower() not in PARTS:
            v.warning(arg.line, "specified date part `%s' is not known"
                      % sanitize(part, 80))
        matched = key_list_and_spec(v, node, args[offset + 1], offset + 2)
        if matched is None:
            return False
        keys, spec = matched
        zone = node.tags.get("zone", False) if node.tags.get("zone_set") else False
        node.data = {"header": header, "part": part, "keys": keys, "spec": spec,
                     "zone": zone}
        return True

    def compile(self, c, node):
        p = dict(node.data)
        add_header_options(node, p)
        return (self.name, node.line, p)


def load(v, name):
    v.register_command(DateTest("date"), name)
    v.register_command(DateTest("currentdate"), name)
    return True


def _run_date(it, op):
    p = op[2]
    ctx = it.ctx
    local = local_zone(ctx.now)
    zone_spec = p["zone"]
    if zone_spec is False:
        wanted = local
    elif zone_spec is None:
        wanted = None   # original zone
    else:
        text = it.expand(zone_spec)
        wanted = parse_zone(text)
        if wanted is None:
            if not isinstance(zone_spec, str):
                it.warning("specified :zone argument `%s' is not a valid timezone "
                           "(using local zone)" % sanitize(text, 40))
            wanted = local
    part = it.expand(p["part"]).lower()
    if part not in PARTS:
        it.warning("specified date part argument `%s' is not known"
                   % sanitize(it.expand(p["part"]), 40))
        return False
    if op[0] == "date":
        from .core import header_source
        q = dict(p)
        q["headers"] = [p["header"]]
        values = header_source(it, q, False)
        if not values:
            return match(it, p["spec"], [], it.expand_list(p["keys"]))
        value = values[0]
        semi = value.rfind(";")
        if semi >= 0:
            value = value[semi + 1:]
        parsed = parse_date(value)
        if parsed is None:
            return match(it, p["spec"], [], it.expand_list(p["keys"]))
        ts, original = parsed
    else:
        ts, original = int(ctx.now), local
    zone = original if wanted is None else wanted
    result = date_part(ts, zone, part)
    values = [] if result is None else [result]
    return match(it, p["spec"], values, it.expand_list(p["keys"]))


TESTS["date"] = _run_date
TESTS["currentdate"] = _run_date
