/**
 * Where and why a text is not JSON, without quoting it. V8's own messages quote the text around
 * the fault ("Unexpected token 'x', "...": is not valid JSON"), and a --tasks file may hold
 * secrets in its steps' `env`: a message about it says position and cause, never content.
 * Pure, iterative (a file nested 100,000 deep cannot overflow the stack), used only once
 * JSON.parse has already refused the text.
 */

export interface JsonSyntaxFault {
  /** 1-based line and column (in UTF-16 code units, as editors count for ASCII). */
  line: number;
  column: number;
  cause: string;
}

type Expect = 'value' | 'value-or-close' | 'key' | 'key-or-close' | 'colon' | 'comma-or-close' | 'end';

/** The first syntax fault of `text`, or undefined when it is valid JSON. */
export function findJsonSyntaxFault(text: string): JsonSyntaxFault | undefined {
  const stack: Array<'}' | ']'> = [];
  let expect: Expect = 'value';
  let i = 0;
  const fault = (at: number, cause: string): JsonSyntaxFault => {
    const before = text.slice(0, at);
    const line = before.split('\n').length;
    return { line, column: at - before.lastIndexOf('\n'), cause };
  };
  /** After a complete value: what the container (if any) allows next. */
  const afterValue = (): Expect => (stack.length === 0 ? 'end' : 'comma-or-close');
  /** Consumes the closing bracket of the innermost container. */
  const close = (): void => {
    i++;
    stack.pop();
    expect = afterValue();
  };

  while (true) {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
    if (i >= text.length) return expect === 'end' ? undefined : fault(i, 'unexpected end of the file');
    const c = text[i]!;
    const start = i;
    switch (expect) {
      case 'end':
        return fault(i, 'unexpected text after the JSON value');
      case 'colon':
        if (c !== ':') return fault(i, 'expected ":" after a key');
        i++;
        expect = 'value';
        continue;
      case 'comma-or-close': {
        const closing = stack[stack.length - 1]!;
        if (c === ',') {
          i++;
          expect = closing === '}' ? 'key' : 'value';
        } else if (c === closing) close();
        else return fault(i, `expected "," or "${closing}"`);
        continue;
      }
      case 'key':
      case 'key-or-close':
        if (c === '}' && expect === 'key-or-close') {
          close();
          continue;
        }
        if (c !== '"') return fault(i, expect === 'key' ? 'expected a quoted key after ","' : 'expected a quoted key or "}"');
        {
          const end = stringEnd(text, i);
          if (typeof end !== 'number') return fault(end.at, end.cause);
          i = end;
        }
        expect = 'colon';
        continue;
      case 'value':
      case 'value-or-close':
        if (c === ']' && expect === 'value-or-close') {
          close();
          continue;
        }
        if (c === '{' || c === '[') {
          stack.push(c === '{' ? '}' : ']');
          i++;
          expect = c === '{' ? 'key-or-close' : 'value-or-close';
          continue;
        }
        if (c === '"') {
          const end = stringEnd(text, i);
          if (typeof end !== 'number') return fault(end.at, end.cause);
          i = end;
        } else if (c === '-' || (c >= '0' && c <= '9')) {
          const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
          if (!m || m[0] === '-') return fault(start, 'malformed number');
          i += m[0].length;
        } else {
          const literal = ['true', 'false', 'null'].find((l) => text.startsWith(l, i));
          if (!literal) return fault(start, expect === 'value' && stack.length > 0 ? 'expected a value (a trailing comma?)' : 'expected a value');
          i += literal.length;
        }
        expect = afterValue();
        continue;
    }
  }
}

/** Index just past the string starting at `at` (a `"`), or where and why it is malformed. */
function stringEnd(text: string, at: number): number | { at: number; cause: string } {
  for (let i = at + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) return i + 1;
    if (c < 0x20) return { at: i, cause: 'a control character (a raw line break?) inside a string' };
    if (c === 0x5c) {
      const e = text[i + 1];
      if (e === 'u') {
        if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return { at: i, cause: 'a malformed \\u escape in a string' };
        i += 5;
      } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
      else return { at: i, cause: 'an invalid escape in a string' };
    }
  }
  return { at: text.length, cause: 'a string that never ends' };
}
