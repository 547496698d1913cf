"""The command template: parsed once per run, rendered into an argv once per task.

Placeholders are parallelr syntax, recognised in every quoting context: ``@TASK@`` is the task
file's absolute path, ``@ARG@`` the first argument and ``@ARG_N@`` the N-th (1-based).

Without a shell (the default) the template is split once with POSIX word rules and each
placeholder is substituted *inside* its word, so a value is always exactly one piece of one
argv word: it is never split, globbed or run, whatever it contains. ``$NAME`` / ``${NAME}`` of
an ``-E`` variable is expanded the same way, but only where a shell would expand it.

With ``--shell`` the template becomes a ``/bin/sh -c`` script and each value is quoted for the
exact quoting context it stands in, so values stay data there too. Contexts where no quoting
is reliable (backquotes, ``${...}``, arithmetic, here-documents) refuse placeholders.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

from parallelr.errors import CommandError, UsageError

SHELL = "/bin/sh"

PLACEHOLDER = re.compile(r"@(?:TASK|ARG(?:_(\d+))?)@")
TASK_KEY = 0  # placeholder keys: 0 is @TASK@, N >= 1 is @ARG_N@ (and @ARG@ is 1)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_OPERATOR = re.compile(r"[|&;<>`]|\$\(")
_BLANKS = " \t\n"
_WORD_BREAKS = " \t\n;&|()<>"
_CASE_KEYWORD = re.compile(r"case(?=[\s;&|()<>]|$)")
_DOUBLE_QUOTE_SPECIALS = re.compile(r'([\\"$`])')


@attrs.frozen
class _EnvReference:
    """``$NAME`` or ``${NAME}`` of an -E variable; ``raw`` is kept if the task lacks the name."""

    name: str
    raw: str


# A word of the no-shell argv: a plain string when it has nothing to substitute, else its parts.
_Part = Union[str, int, _EnvReference]
_Word = Union[str, Tuple[_Part, ...]]
# A piece of a --shell script: literal text, or (placeholder key, quoting context "U"/"D"/"S").
_ScriptPart = Union[str, Tuple[int, str]]


def _placeholder_key(match: re.Match[str]) -> int:
    if match.group(0) == "@TASK@":
        return TASK_KEY
    if match.group(1) is None:
        return 1
    index = int(match.group(1))
    if index < 1:
        raise CommandError(
            f"{match.group(0)} is not a valid placeholder: arguments are numbered from 1 "
            "(@ARG_1@ is the first)"
        )
    return index


def _env_names_tuple(value: Any) -> Tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _program_made_absolute(words: Tuple[_Word, ...]) -> Tuple[_Word, ...]:
    """``./process.sh`` means the file beside the user, not in the task's working directory
    (the workspace): a relative program path is resolved where parallelr was started, as
    @TASK@ is. A bare name (``bash``) is still looked up in PATH."""
    if words and type(words[0]) is str and os.sep in words[0] and not os.path.isabs(words[0]):
        return (os.path.abspath(words[0]), *words[1:])
    return words


@attrs.frozen
class CommandTemplate:
    """A ``-C`` command template; build it with :meth:`parse` (invalid templates raise CommandError)."""

    text: str
    env_names: Tuple[str, ...] = attrs.field(default=(), converter=_env_names_tuple)
    shell: bool = False
    uses_task: bool = attrs.field(init=False, eq=False, repr=False)
    max_arg_index: int = attrs.field(init=False, eq=False, repr=False)
    _words: Tuple[_Word, ...] = attrs.field(init=False, eq=False, repr=False)
    _script: Tuple[_ScriptPart, ...] = attrs.field(init=False, eq=False, repr=False)
    _warnings: Tuple[str, ...] = attrs.field(init=False, eq=False, repr=False)

    @classmethod
    def parse(cls, text: str, env_names: Sequence[str] = (), shell: bool = False) -> CommandTemplate:
        return cls(text, tuple(env_names), shell)

    def __attrs_post_init__(self) -> None:
        if not self.text or not self.text.strip():
            raise CommandError("empty command: give the command to run with -C/--Command")
        words: Tuple[_Word, ...] = ()
        script: Tuple[_ScriptPart, ...] = ()
        warnings: Tuple[str, ...] = ()
        if self.shell:
            script = tuple(_ShellScanner(self.text).scan())
            keys = [part[0] for part in script if not isinstance(part, str)]
        else:
            splitter = _WordSplitter(self.text, frozenset(self.env_names))
            words = _program_made_absolute(tuple(splitter.split()))
            warnings = tuple(splitter.warnings)
            keys = [part for word in words if not isinstance(word, str) for part in word if type(part) is int]
        object.__setattr__(self, "_words", words)
        object.__setattr__(self, "_script", script)
        object.__setattr__(self, "_warnings", warnings)
        object.__setattr__(self, "uses_task", TASK_KEY in keys)
        object.__setattr__(self, "max_arg_index", max(keys, default=0))

    def render(
        self, task_path: Optional[str], arguments: Sequence[str], env: Mapping[str, str]
    ) -> Tuple[str, ...]:
        """The argv of one task. Raises CommandError when a placeholder has no value."""
        if self.uses_task and task_path is None:
            raise CommandError("the command uses @TASK@ but there is no task file: give one with -T")
        if self.max_arg_index > len(arguments):
            raise CommandError(
                f"the task has {len(arguments)} arguments but the command uses @ARG_{self.max_arg_index}@: "
                "placeholder beyond the columns"
            )
        values = (task_path or "", *arguments)
        if self.shell:
            return (SHELL, "-c", "".join([_quoted_part(part, values) for part in self._script]))
        argv = []
        for word in self._words:
            if type(word) is str:
                argv.append(word)
            else:
                argv.append("".join([_part_value(part, values, env) for part in word]))
        return tuple(argv)

    def operator_warnings(self) -> List[str]:
        """One line per word that looks like shell syntax but will reach the program verbatim."""
        return list(self._warnings)


def _part_value(part: _Part, values: Tuple[str, ...], env: Mapping[str, str]) -> str:
    if type(part) is str:
        return part
    if type(part) is int:
        return values[part]
    return env.get(part.name, part.raw)  # type: ignore[union-attr]


def _quoted_part(part: _ScriptPart, values: Tuple[str, ...]) -> str:
    if isinstance(part, str):
        return part
    value = values[part[0]]
    context = part[1]
    if context == "U":
        return shlex.quote(value)
    if context == "D":
        return _DOUBLE_QUOTE_SPECIALS.sub(r"\\\1", value)
    return value.replace("'", "'\\''")


def check_argv(argv: Sequence[str], max_argument_length: int) -> None:
    """Refuse an argv with a NUL byte or an element longer than ``max_argument_length``."""
    for index, argument in enumerate(argv):
        if "\0" in argument:
            raise CommandError(f"argument {index} of the command contains a NUL byte: {argument[:40]!r}")
        if len(argument) > max_argument_length:
            raise CommandError(
                f"argument {index} of the command ({argument[:40]!r}...) is {len(argument)} characters long "
                f"and exceeds max_argument_length {max_argument_length}; shorten it or raise "
                "security.max_argument_length in the config"
            )


def parse_env_names(values: Sequence[str]) -> Tuple[str, ...]:
    """``-E A,B -E C`` (already collected by argparse) → ``("A", "B", "C")``."""
    names: List[str] = []
    for value in values:
        for entry in value.split(","):
            name = entry.strip()
            if not name:
                raise UsageError(f"-E contains an empty variable name: {value!r}")
            if not _NAME.fullmatch(name):
                raise UsageError(
                    f"-E variable name is not valid: {name!r} (use letters, digits and _, not starting "
                    "with a digit)"
                )
            if name in names:
                raise UsageError(f"-E names the variable {name} twice: give each name once")
            names.append(name)
    return tuple(names)


class _WordSplitter:
    """POSIX word splitting of a template, keeping placeholders and -E references as parts."""

    def __init__(self, text: str, env_names: frozenset) -> None:
        self.text = text
        self.env_names = env_names
        self.i = 0
        self.words: List[_Word] = []
        self.warnings: List[str] = []
        self.parts: Optional[List[_Part]] = None  # None between words
        self.unquoted: List[str] = []  # the word's unquoted characters, to spot shell operators
        self.word_start = 0

    def split(self) -> List[_Word]:
        text, n = self.text, len(self.text)
        while self.i < n:
            c = text[self.i]
            if c == "\\" and text.startswith("\n", self.i + 1):
                self.i += 2  # line continuation: joins, never a word of its own
                continue
            if c in _BLANKS:
                self._end_word()
                self.i += 1
                continue
            if self.parts is None:
                self.parts, self.unquoted, self.word_start = [], [], self.i
            if c == "'":
                self._single_quoted()
            elif c == '"':
                self._double_quoted()
            elif c == "\\":
                if self.i + 1 >= n:
                    raise CommandError(f"the command ends with a lone backslash: {text}")
                self._literal(text[self.i + 1])
                self.i += 2
            elif not self._substitution():
                self.unquoted.append(c)
                self._literal(c)
                self.i += 1
        self._end_word()
        if not self.words:
            raise CommandError("empty command: give the command to run with -C/--Command")
        return self.words

    def _literal(self, chars: str) -> None:
        assert self.parts is not None
        if self.parts and type(self.parts[-1]) is str:
            self.parts[-1] += chars  # type: ignore[operator]
        else:
            self.parts.append(chars)

    def _substitution(self, expand_env: bool = True) -> bool:
        """Consume a placeholder (or an -E reference) at the cursor; False when there is none."""
        assert self.parts is not None
        c = self.text[self.i]
        if c == "@":
            match = PLACEHOLDER.match(self.text, self.i)
            if match:
                self.parts.append(_placeholder_key(match))
                self.i = match.end()
                return True
        elif c == "$" and expand_env:
            match = _ENV_REFERENCE.match(self.text, self.i)
            if match:
                name = match.group(1) or match.group(2)
                if name in self.env_names:
                    self.parts.append(_EnvReference(name, match.group(0)))
                    self.i = match.end()
                    return True
        return False

    def _single_quoted(self) -> None:
        end = self.text.find("'", self.i + 1)
        if end < 0:
            raise CommandError(f"unbalanced quote in command: {self.text}")
        self._literal("")  # '' is an (empty) word even with nothing inside
        self.i += 1
        while self.i < end:
            if not self._substitution(expand_env=False):
                self._literal(self.text[self.i])
                self.i += 1
        self.i = end + 1

    def _double_quoted(self) -> None:
        text, n = self.text, len(self.text)
        self._literal("")
        self.i += 1
        while True:
            if self.i >= n:
                raise CommandError(f"unbalanced quote in command: {text}")
            c = text[self.i]
            if c == '"':
                self.i += 1
                return
            if c == "\\" and self.i + 1 < n and text[self.i + 1] in '"\\$`\n':
                if text[self.i + 1] != "\n":
                    self._literal(text[self.i + 1])
                self.i += 2
            elif not self._substitution():
                self._literal(c)
                self.i += 1

    def _end_word(self) -> None:
        if self.parts is None:
            return
        parts = [part for part in self.parts if part != ""]
        if not parts:
            self.words.append("")
        elif len(parts) == 1 and type(parts[0]) is str:
            self.words.append(parts[0])  # type: ignore[arg-type]
        else:
            self.words.append(tuple(parts))
        if _OPERATOR.search("".join(self.unquoted)):
            word = self.text[self.word_start : self.i]
            warning = (
                f"the command contains '{word}' which is passed to the program "
                "as a plain argument (no shell); add --shell to run it through /bin/sh"
            )
            if warning not in self.warnings:
                self.warnings.append(warning)
        self.parts = None


class _ShellScanner:
    """Walks a --shell template like /bin/sh would, noting the quoting context of each placeholder.

    States on the stack: "U" top level, "C" inside ``$(...)`` (new unquoted level), "D" inside
    double quotes, "S" inside single quotes. Regions whose quoting rules no value escaping can
    survive are copied verbatim and must not contain placeholders.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.stack: List[str] = ["U"]
        self.paren_depths: List[int] = []  # one per open "C": its unmatched "("
        self.parts: List[_ScriptPart] = []
        self.buffer: List[str] = []
        self.word_start = True
        self.heredocs: List[Tuple[str, bool]] = []  # (delimiter, strip tabs) waiting for the newline
        self.untrackable = ""  # why later placeholders' contexts are no longer certain

    def scan(self) -> List[_ScriptPart]:
        text, n = self.text, len(self.text)
        while self.i < n:
            state = self.stack[-1]
            c = text[self.i]
            if c == "@":
                match = PLACEHOLDER.match(text, self.i)
                if match:
                    self._placeholder(match, state)
                    continue
            if state == "S":
                self._emit(c)
                if c == "'":
                    self.stack.pop()
            elif state == "D":
                self._double_quoted(c)
            else:
                self._unquoted(c, state)
        if self.stack[-1] in ("S", "D"):
            raise CommandError(f"unbalanced quote in command: {text}")
        if len(self.stack) > 1:
            raise CommandError(f"unbalanced $( in command: {text}")
        self._flush()
        return self.parts

    def _emit(self, chars: str, advance: Optional[int] = None) -> None:
        self.buffer.append(chars)
        self.i += len(chars) if advance is None else advance

    def _flush(self) -> None:
        if self.buffer:
            self.parts.append("".join(self.buffer))
            self.buffer = []

    def _placeholder(self, match: re.Match[str], state: str) -> None:
        if self.untrackable:
            raise CommandError(
                f"{match.group(0)} cannot be quoted safely with --shell: {self.untrackable}; "
                "use an -E variable instead"
            )
        self._flush()
        self.parts.append((_placeholder_key(match), state if state in ("S", "D") else "U"))
        self.i = match.end()
        self.word_start = False

    def _refuse_placeholders(self, start: int, end: int, where: str) -> None:
        match = PLACEHOLDER.search(self.text, start, end)
        if match:
            raise CommandError(
                f"{match.group(0)} inside {where} cannot be quoted safely with --shell; "
                "move it out of there or use an -E variable instead"
            )

    def _region(self, end: int, where: str) -> None:
        self._refuse_placeholders(self.i, end, where)
        self._emit(self.text[self.i : end])
        self.word_start = False

    def _double_quoted(self, c: str) -> None:
        text = self.text
        if c == "\\":
            following = text[self.i + 1 : self.i + 2]
            if following and following in '$`"\\\n':
                self._emit(text[self.i : self.i + 2])
            elif PLACEHOLDER.match(text, self.i + 1):
                # A literal backslash here; doubled so that it cannot pair with an escaped value.
                self._emit("\\\\", advance=1)
            else:
                self._emit(c)
        elif c == '"':
            self.stack.pop()
            self._emit(c)
        elif c == "$":
            self._dollar("D")
        elif c == "`":
            self._backquotes()
        else:
            self._emit(c)

    def _unquoted(self, c: str, state: str) -> None:
        text = self.text
        word_start, self.word_start = self.word_start, False
        if c == "\\":
            self._emit(text[self.i : self.i + 2])
        elif c in "'\"":
            self.stack.append("S" if c == "'" else "D")
            self._emit(c)
        elif c == "$":
            self._dollar(state)
        elif c == "`":
            self._backquotes()
        elif c == "#" and word_start:
            end = text.find("\n", self.i)
            self._emit(text[self.i : len(text) if end < 0 else end])  # a comment: nothing substituted
            self.word_start = True
        elif c == "<" and text.startswith("<<", self.i) and not text.startswith("<<<", self.i):
            self._heredoc_operator()
        elif c == "(" and word_start and text.startswith("((", self.i):
            self._region(self._paren_end(self.i), "a ((...)) arithmetic command")
        elif c == "\n":
            self._emit(c)
            self.word_start = True
            if self.heredocs:
                self._heredoc_bodies()
        else:
            if word_start and state == "C" and _CASE_KEYWORD.match(text, self.i):
                self.untrackable = "a case statement inside $(...) hides where the substitution ends"
            closes_substitution = False
            if state == "C" and c in "()":
                self.paren_depths[-1] += 1 if c == "(" else -1
                if self.paren_depths[-1] == 0:
                    self.paren_depths.pop()
                    self.stack.pop()
                    closes_substitution = True  # "$(...)" ends inside a word, not between words
            self._emit(c)
            self.word_start = c in _WORD_BREAKS and not closes_substitution

    def _dollar(self, state: str) -> None:
        text, i = self.text, self.i
        following = text[i + 1 : i + 2]
        if text.startswith("$((", i):
            self._region(self._paren_end(i + 1), "a $((...)) arithmetic expansion")
        elif following == "(":
            self.stack.append("C")
            self.paren_depths.append(1)
            self._emit("$(")
            self.word_start = True
        elif following == "{":
            self._region(self._brace_end(i + 1), "a ${...} parameter expansion")
        elif following == "[":
            end = text.find("]", i)
            self._region(len(text) if end < 0 else end + 1, "a $[...] arithmetic expansion")
        elif following == "'" and state != "D":
            self._region(self._ansi_quote_end(i + 2), "a $'...' string")
        elif PLACEHOLDER.match(text, i + 1):
            self._emit("\\$", advance=1)  # "$@ARG@" is a literal dollar before the value, as without --shell
        else:
            self._emit("$")

    def _backquotes(self) -> None:
        text, j = self.text, self.i + 1
        while j < len(text) and text[j] != "`":
            j += 2 if text[j] == "\\" else 1
        if j >= len(text):
            raise CommandError(f"unbalanced quote in command: {text}")
        self._region(j + 1, "`...` (use $(...) instead)")

    def _skip_quoted(self, j: int) -> int:
        """Index just past the quoted string starting at ``j`` (or the end of the text)."""
        text, quote = self.text, self.text[j]
        j += 1
        while j < len(text) and text[j] != quote:
            j += 2 if text[j] == "\\" and quote == '"' else 1
        return j + 1

    def _paren_end(self, start: int) -> int:
        return self._matching_end(start, "(", ")")

    def _brace_end(self, start: int) -> int:
        return self._matching_end(start, "{", "}")

    def _matching_end(self, start: int, opening: str, closing: str) -> int:
        text, j, depth = self.text, start, 0
        while j < len(text):
            c = text[j]
            if c in "'\"":
                j = self._skip_quoted(j)
                continue
            if c == "\\":
                j += 2
                continue
            if c == opening:
                depth += 1
            elif c == closing:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        return len(text)

    def _ansi_quote_end(self, j: int) -> int:
        text = self.text
        while j < len(text) and text[j] != "'":
            j += 2 if text[j] == "\\" else 1
        return min(j + 1, len(text))

    def _heredoc_operator(self) -> None:
        text, start = self.text, self.i
        j = start + 2
        strip_tabs = text.startswith("-", j)
        j += 1 if strip_tabs else 0
        while j < len(text) and text[j] in " \t":
            j += 1
        word_begin, delimiter = j, []
        while j < len(text) and text[j] not in _WORD_BREAKS:
            if text[j] in "'\"":
                end = self._skip_quoted(j)
                delimiter.append(text[j + 1 : end - 1])
                j = end
            elif text[j] == "\\":
                delimiter.append(text[j + 1 : j + 2])
                j += 2
            else:
                delimiter.append(text[j])
                j += 1
        self._refuse_placeholders(word_begin, j, "a here-document delimiter")
        if j > word_begin:
            self.heredocs.append(("".join(delimiter), strip_tabs))
        self._emit(text[start:j])

    def _heredoc_bodies(self) -> None:
        text = self.text
        for delimiter, strip_tabs in self.heredocs:
            while self.i < len(text):
                newline = text.find("\n", self.i)
                end = len(text) if newline < 0 else newline + 1
                line = text[self.i : end].rstrip("\n")
                self._refuse_placeholders(self.i, end, "a here-document")
                self._emit(text[self.i : end])
                if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                    break
        self.heredocs = []
