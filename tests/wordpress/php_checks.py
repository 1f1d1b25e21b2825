"""A few of WordPress's coding-standard rules, checked with regular expressions over the plugin's PHP (its
comments blanked by PHP's own tokenizer first, line numbers kept). Not PHPCS: a small, honest subset that catches
the usual security slips, and says what it looked at.

- every file starts with an ABSPATH guard (uninstall.php: WP_UNINSTALL_PLUGIN);
- every register_rest_route() endpoint has a permission_callback;
- no echo/print/<?= of a variable or a call without an esc_*() or wp_kses*() in that statement;
- no read of $_GET/$_POST/$_REQUEST without sanitize_*(), absint() or wp_unslash() in that statement (isset() and
  empty() are not reads);
- every <form> has wp_nonce_field() or settings_fields(), and every admin_post_*/wp_ajax_* handler calls
  check_admin_referer(), check_ajax_referer() or wp_verify_nonce().
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# Comments become blank lines (so a commented-out echo is not code, and line numbers stay right).
STRIP_COMMENTS = r"""
foreach (token_get_all(file_get_contents($argv[1])) as $t) {
    if (is_array($t) && in_array($t[0], [T_COMMENT, T_DOC_COMMENT], true)) {
        echo str_repeat("\n", substr_count($t[1], "\n"));
    } else {
        echo is_array($t) ? $t[1] : $t;
    }
}
"""

GUARD = r"""^\s*<\?php\s*(?:declare\s*\([^)]*\)\s*;\s*)?(?:namespace\s+[\w\\]+\s*;\s*)?(?:
    defined\s*\(\s*['"]{const}['"]\s*\)\s*(?:\|\||or)\s*(?:exit|die)\b
  | if\s*\(\s*!\s*defined\s*\(\s*['"]{const}['"]\s*\)\s*\)\s*(?:\{{\s*)?(?:exit|die)\b)"""  # .format(const=…)
ESCAPED = re.compile(r"\b(esc_\w+|wp_kses\w*)\s*\(")
SANITIZED = re.compile(r"\b(sanitize_\w+|absint|wp_unslash)\s*\(")
NONCE_CHECK = re.compile(r"\b(check_admin_referer|check_ajax_referer|wp_verify_nonce)\s*\(")
HANDLER_HOOK = re.compile(r"""add_action\s*\(\s*['"]((?:admin_post|wp_ajax)(?:_nopriv)?_[\w-]+)['"]"""
                          r"""\s*,\s*(array\s*\(\s*[^,]+,\s*['"](\w+)['"]\s*\)|\[\s*[^,]+,\s*['"](\w+)['"]\s*\]"""
                          r"""|['"](\w+)['"])""")


@dataclass
class Report:
    files: int = 0
    routes: int = 0
    outputs: int = 0
    superglobal_reads: int = 0
    forms: int = 0
    handlers: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.files} PHP files: {self.routes} register_rest_route() endpoints, {self.outputs} echo/print "
                f"statements with a value, {self.superglobal_reads} $_GET/$_POST/$_REQUEST reads, {self.forms} forms, "
                f"{self.handlers} admin-post/ajax handlers; {len(self.problems)} problems")


def code_of(path: Path, php: str) -> str:
    done = subprocess.run([php, "-r", STRIP_COMMENTS, str(path)], capture_output=True, text=True, timeout=30,
                          check=True)
    return done.stdout


def line_of(code: str, index: int) -> int:
    return code.count("\n", 0, index) + 1


def _outside_strings(code: str, start: int):
    """(index, character) from ``start`` on, the insides of quoted strings (and their quotes) skipped."""
    i, quote = start, None
    while i < len(code):
        char = code[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        else:
            yield i, char
        i += 1


def balanced(code: str, start: int, open_: str = "(", close: str = ")") -> str:
    """The text from ``start`` (an opening bracket) to its matching close, strings skipped."""
    depth = 0
    for i, char in _outside_strings(code, start):
        if char == open_:
            depth += 1
        elif char == close:
            depth -= 1
            if depth == 0:
                return code[start:i + 1]
    return code[start:]


def statement(code: str, start: int) -> str:
    """From ``start`` to the end of the PHP statement (a ';' or '?>' outside strings and brackets)."""
    depth = 0
    for i, char in _outside_strings(code, start):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth <= 0 and (char == ";" or code.startswith("?>", i)):
            return code[start:i]
    return code[start:]


def check_plugin(folder: Path, php: str) -> Report:
    report = Report()
    sources = {path: code_of(path, php) for path in sorted(folder.rglob("*.php"))}
    report.files = len(sources)
    functions: dict[str, str] = {}  # function or method name -> its body, for the handler check
    for code in sources.values():
        for match in re.finditer(r"\bfunction\s+&?\s*(\w+)\s*\([^)]*\)[^{;]*\{", code):
            functions[match.group(1)] = balanced(code, match.end() - 1, "{", "}")

    for path, code in sources.items():
        name = str(path.relative_to(folder))

        def where(index: int, name=name, code=code) -> str:
            return f"{name}:{line_of(code, index)}"

        const = "WP_UNINSTALL_PLUGIN" if path.name == "uninstall.php" and path.parent == folder else "ABSPATH"
        if re.sub(r"<\?php|\s", "", code) and not re.match(GUARD.format(const=const), code, re.VERBOSE):
            report.problems.append(f"{name}: does not start with an {const} guard")

        for match in re.finditer(r"\bregister_rest_route\s*\(", code):
            call = balanced(code, match.end() - 1)
            endpoints = max(1, len(re.findall(r"['\"]methods['\"]\s*=>", call)))
            report.routes += endpoints
            if len(re.findall(r"['\"]permission_callback['\"]\s*=>", call)) < endpoints:
                report.problems.append(f"{where(match.start())}: register_rest_route() without a permission_callback")

        for match in re.finditer(r"(?<![\w$>:])(echo|print)\b|<\?=", code):
            text = statement(code, match.end())
            if not re.search(r"\$|\w+\s*\(", text):  # a literal string only
                continue
            report.outputs += 1
            if not ESCAPED.search(text):
                report.problems.append(f"{where(match.start())}: output without esc_*()/wp_kses*(): "
                                       f"{match.group(0)}{text.strip()[:100]}")

        for match in re.finditer(r"(?<![\w$>:])_ex?\s*\(", code):
            report.outputs += 1
            report.problems.append(f"{where(match.start())}: _e()/_ex() prints unescaped: use esc_html_e()")

        for match in re.finditer(r"\$_(GET|POST|REQUEST)\b", code):
            before = code[max(0, match.start() - 40):match.start()]
            if re.search(r"\b(isset|empty)\s*\(\s*$", before):
                continue
            report.superglobal_reads += 1
            start = code.rfind("\n", 0, match.start()) + 1
            text = code[start:match.start()] + statement(code, match.start())
            if not SANITIZED.search(text):
                report.problems.append(f"{where(match.start())}: {match.group(0)} read without "
                                       f"sanitize_*()/absint()/wp_unslash()")

        for match in re.finditer(r"<form\b", code, re.IGNORECASE):
            report.forms += 1
            end = code.lower().find("</form>", match.end())
            form = code[match.end():end if end >= 0 else len(code)]
            if not re.search(r"\b(wp_nonce_field|settings_fields)\s*\(", form):
                report.problems.append(f"{where(match.start())}: a form without wp_nonce_field()/settings_fields()")

        for match in HANDLER_HOOK.finditer(code):
            report.handlers += 1
            handler = match.group(3) or match.group(4) or match.group(5)
            body = functions.get(handler)
            if body is None:
                report.problems.append(f"{where(match.start())}: {match.group(1)}'s handler {handler}() not found")
            elif not NONCE_CHECK.search(body):
                report.problems.append(f"{where(match.start())}: {match.group(1)}'s handler {handler}() checks no "
                                       f"nonce (check_admin_referer/check_ajax_referer/wp_verify_nonce)")
    return report
