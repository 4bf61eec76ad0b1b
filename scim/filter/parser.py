"""Lexing and parsing filter text (RFC 7644 §3.4.2.2 ABNF) into a :mod:`scim.filter.tree`.

Kept apart from evaluation (:mod:`scim.filter.evaluate`) so each module holds one concern.
Every error is an :class:`~scim.errors.InvalidFilter` saying what is wrong and at which
1-based character position; nesting is bounded so no input reaches a RecursionError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from json import JSONDecodeError, JSONDecoder

from scim.constants import MAX_INTEGER_DIGITS
from scim.errors import InvalidFilter, quoted
from scim.filter.tree import (
    And,
    Compare,
    CompareValue,
    Filter,
    Not,
    Or,
    Present,
    ValuePathFilter,
    combine,
)
from scim.paths import AttrPath, PathSyntaxError, scan_attr_path

COMPARE_OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_KEYWORDS = COMPARE_OPERATORS | {"and", "or", "not", "pr"}
_SEPARATORS = " \t"
_PUNCTUATION = "()[]"
# RFC 7159 number; anything else that is a bare word becomes a string (see _Parser.value).
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_END = "end"
# compValue strings are JSON strings, escapes and all (RFC 7644 §3.4.2.2); a raw tab inside
# quotes is let through (strict=False) since it is unambiguous.
_JSON = JSONDecoder(strict=False)


@dataclass(frozen=True)
class _Token:
    """A word, a JSON string, a bracket, or the end; ``start`` is the offset in the full text."""

    kind: str  # "word", "string", one of "()[]", or _END
    text: str
    start: int
    value: str = ""  # the decoded string, for "string" tokens


def _tokenize(text: str, start: int, end: int) -> list[_Token]:
    """Split ``text[start:end]`` into tokens; spaces and tabs only separate them."""
    tokens: list[_Token] = []
    limited = text[:end]  # a string must close inside the range (a PATCH path's [...])
    at = start
    while at < end:
        char = text[at]
        if char in _SEPARATORS:
            at += 1
        elif char in _PUNCTUATION:
            tokens.append(_Token(char, char, at))
            at += 1
        elif char == '"':
            try:
                value, after = _JSON.raw_decode(limited, at)
            except JSONDecodeError as error:
                # "Unterminated string starting at" -> "unterminated string starting"
                reason = error.msg.removesuffix(" at")
                raise _error(reason[:1].lower() + reason[1:], error.pos) from None
            tokens.append(_Token("string", text[at:after], at, value))
            at = after
        elif char.isspace():
            raise _error(f"unexpected character {char!r}; separate tokens with spaces", at)
        else:
            word_end = at
            while word_end < end and not _ends_word(text[word_end]):
                word_end += 1
            tokens.append(_Token("word", text[at:word_end], at))
            at = word_end
    tokens.append(_Token(_END, "", end))
    return tokens


def _ends_word(char: str) -> bool:
    """Whether ``char`` cannot be part of a bare word (attribute path, operator or value)."""
    return char in _PUNCTUATION or char == '"' or char.isspace()


def _error(reason: str, offset: int) -> InvalidFilter:
    """An InvalidFilter for a problem at the 0-based ``offset`` (reported 1-based)."""
    return InvalidFilter(f"filter: {reason} at position {offset + 1}")


def _describe(token: _Token) -> str:
    """How to name ``token`` in an error message."""
    return "the end of the filter" if token.kind == _END else quoted(token.text)


class _Parser:
    """Recursive descent over the tokens; precedence is not > and > or (RFC 7644 §3.4.2.2)."""

    def __init__(
        self, tokens: list[_Token], max_depth: int, max_terms: int, in_value_path: bool
    ) -> None:
        self.tokens = tokens
        self.index = 0
        self.max_depth = max_depth
        self.max_terms = max_terms
        self.terms = 0
        self.in_value_path = in_value_path

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != _END:
            self.index += 1
        return token

    def keyword(self, token: _Token) -> str | None:
        """The lowercase keyword ``token`` is, if it is a word that is one (any case)."""
        folded = token.text.casefold() if token.kind == "word" else ""
        return folded if folded in _KEYWORDS else None

    def parse(self) -> Filter:
        expression = self.or_expression(0)
        token = self.peek()
        if token.kind == _END:
            return expression
        if token.kind == ")":
            raise _error("')' without a matching '('", token.start)
        raise _error(f"expected 'and', 'or' or the end, found {_describe(token)}", token.start)

    def or_expression(self, depth: int) -> Filter:
        terms = [self.and_expression(depth)]
        while self.keyword(self.peek()) == "or":
            self.advance()
            terms.append(self.and_expression(depth))
        return combine(Or, terms)

    def and_expression(self, depth: int) -> Filter:
        terms = [self.unary(depth)]
        while self.keyword(self.peek()) == "and":
            self.advance()
            terms.append(self.unary(depth))
        return combine(And, terms)

    def unary(self, depth: int) -> Filter:
        token = self.peek()
        if token.kind == "(":
            return self.group(depth)
        if self.keyword(token) == "not":
            self.advance()
            if self.peek().kind != "(":
                found = self.peek()
                raise _error(f"expected '(' after 'not', found {_describe(found)}", found.start)
            return Not(self.group(depth))
        return self.attribute_expression(depth)

    def group(self, depth: int) -> Filter:
        opening = self.advance()
        self.enter(depth, opening)
        expression = self.or_expression(depth + 1)
        closing = self.advance()
        if closing.kind != ")":
            raise _error(
                f"expected ')' to close the '(' at position {opening.start + 1}, "
                f"found {_describe(closing)}",
                closing.start,
            )
        return expression

    def enter(self, depth: int, token: _Token) -> None:
        """Refuse to nest deeper than max_depth, so no input can exhaust the stack."""
        if depth >= self.max_depth:
            raise _error(f"nested deeper than {self.max_depth} levels", token.start)

    def attribute_expression(self, depth: int) -> Filter:
        token = self.advance()
        if token.kind != "word" or self.keyword(token) is not None:
            raise _error(f"expected an attribute path, found {_describe(token)}", token.start)
        path = _attr_path(token)
        if self.peek().kind != "[":
            return self.condition(path, token)
        opening = self.advance()
        if self.in_value_path:
            raise _error("a value filter cannot contain another '['", opening.start)
        if path.sub_attribute is not None:
            raise _error(
                f"'[' must follow a multi-valued attribute, not {token.text!r}", opening.start
            )
        self.enter(depth, opening)
        self.in_value_path = True
        expression = self.or_expression(depth + 1)
        self.in_value_path = False
        closing = self.advance()
        if closing.kind != "]":
            raise _error(
                f"expected ']' to close the '[' at position {opening.start + 1}, "
                f"found {_describe(closing)}",
                closing.start,
            )
        after = self.peek()
        if after.kind == "word" and after.start == closing.start + 1 and after.text[:1] == ".":
            # emails[type eq "work"].value eq "x" is not in the RFC's filter grammar, but Entra
            # sends it for matching (entra-provisioning.md A2); it means one element satisfies
            # both, which is exactly a value filter with the comparison added.
            self.advance()
            sub_path = _attr_path(after, skip=1)
            if sub_path.schema is not None or sub_path.sub_attribute is not None:
                offset = 1 if sub_path.schema is not None else 1 + len(sub_path.attribute)
                raise _error(
                    f"expected one sub-attribute name after ']', found {after.text!r}",
                    after.start + offset,
                )
            expression = And(expression, self.condition(sub_path, after))
        return ValuePathFilter(path, expression)

    def condition(self, path: AttrPath, path_token: _Token) -> Filter:
        """The ``pr`` or ``op value`` after an attribute path."""
        self.terms += 1
        if self.terms > self.max_terms:
            raise _error(
                f"more than {self.max_terms} comparisons (each is tested on every resource "
                "a filter reads)",
                path_token.start,
            )
        token = self.advance()
        operator_name = self.keyword(token)
        if operator_name == "pr":
            return Present(path)
        if operator_name not in COMPARE_OPERATORS:
            raise _error(
                f"expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr) after "
                f"{path_token.text!r}, found {_describe(token)}",
                token.start,
            )
        return Compare(path, operator_name, self.value(token))

    def value(self, operator_token: _Token) -> CompareValue:
        """A compValue: JSON string, number, true, false, null, or a tolerated bare word."""
        token = self.advance()
        if token.kind == "string":
            return token.value
        if token.kind != "word" or token.text.casefold() in _KEYWORDS:
            raise _error(f"expected a value after {operator_token.text!r}", token.start)
        folded = token.text.casefold()
        if folded in ("true", "false"):
            return folded == "true"
        if folded == "null":
            return None
        number = _NUMBER.fullmatch(token.text)
        if number is None:
            # Microsoft's reference test suite sends unquoted words: `name.FamilyName eq
            # Employee`, `emails.Value co example.com` (entra-provisioning.md Q24), and its
            # legacy manager query sends bare GUIDs (A17). Read them as strings.
            return token.text
        if number.group(1) is None and number.group(2) is None:
            if len(token.text) > MAX_INTEGER_DIGITS:
                raise _error(f"number has more than {MAX_INTEGER_DIGITS} digits", token.start)
            return int(token.text)
        parsed = float(token.text)
        if parsed in (float("inf"), float("-inf")):
            raise _error("number is out of range", token.start)
        return parsed


def _attr_path(token: _Token, skip: int = 0) -> AttrPath:
    """The attribute path in a word token (after ``skip`` characters), as InvalidFilter."""
    try:
        return scan_attr_path(token.text[skip:])
    except PathSyntaxError as error:
        raise _error(
            f"{error.reason} in attribute path {token.text!r}", token.start + skip + error.position
        ) from None


# The most comparisons (``attr op value``, ``attr pr``) one filter may hold. A filter no
# index answers tests each of them on every user or group it reads: on 10,000 users with
# the embedded store, 240 or-ed comparisons held the server's only thread for 16 s, while
# the 4,096 characters of [scim] max_filter_length hold about 250. Entra sends one.
MAX_TERMS = 32


def _parse(
    text: str,
    start: int,
    end: int,
    max_length: int,
    max_depth: int,
    in_value_path: bool,
    max_terms: int = MAX_TERMS,
) -> Filter:
    """Parse ``text[start:end]``, reporting positions in ``text``."""
    if end - start > max_length:
        raise InvalidFilter(f"filter: longer than {max_length} characters ({end - start})")
    tokens = _tokenize(text, start, end)
    if tokens[0].kind == _END and in_value_path:
        raise _error("the value filter in [...] is empty", start)
    if tokens[0].kind == _END:
        raise InvalidFilter("filter: the filter is empty")
    try:
        return _Parser(tokens, max_depth, max_terms, in_value_path).parse()
    except RecursionError:  # only if a caller raised max_depth beyond the interpreter's stack
        raise InvalidFilter(f"filter: nested too deeply (max_depth={max_depth})") from None


def parse_filter(
    text: str, *, max_length: int = 4096, max_depth: int = 32, max_terms: int = MAX_TERMS
) -> Filter:
    """Parse a filter expression (RFC 7644 §3.4.2.2) into a tree.

    :raises InvalidFilter: with what was wrong and where (1-based character position), or
        that the filter is longer than ``max_length``, nested deeper than ``max_depth`` or
        holds more than ``max_terms`` comparisons.
    """
    if not isinstance(text, str):  # a SearchRequest body can carry any JSON (RFC 7644 §3.4.3)
        raise InvalidFilter("filter: must be a string")
    return _parse(text, 0, len(text), max_length, max_depth, False, max_terms)


def parse_value_filter(
    text: str, start: int, end: int, *, max_length: int = 4096, max_depth: int = 32
) -> Filter:
    """Parse ``text[start:end]`` as a valFilter, the inside of a PATCH path's ``[...]``.

    Positions in errors count from the start of ``text``, the whole path.

    :raises InvalidFilter: as :func:`parse_filter`; a nested ``[`` is also an error.
    """
    return _parse(text, start, end, max_length, max_depth, in_value_path=True)
