package config

import "fmt"

// MaxFileSize bounds the configuration file. A file with a thousand static
// hosts is about 90 KiB. The decoder's cost grows with the file's text
// whatever its depth: 256 KiB of nested inline tables take it about 110 MB
// of allocations (1 MiB: 420 MB and seconds), measured by TestHostileFileBounded.
const MaxFileSize = 256 << 10

// MaxDepth bounds how deeply the file nests tables, arrays and dotted keys.
// kvmnet's own keys go 3 deep ([[network.NAME.host]]); BurntSushi/toml
// spends memory quadratic in the depth (2,000 nested inline tables, 8 KB of
// text, cost it 470 MB), so the depth is checked before the file is decoded.
const MaxDepth = 8

// checkBounds refuses a file larger than MaxFileSize or nesting deeper than
// MaxDepth, before the decoder sees it. It reads the file as TOML's lexer
// does, only as far as telling structure from strings and comments: depth is
// the open '[' and '{' plus the dots of the key or value being read.
func checkBounds(path string, b []byte) error {
	if len(b) > MaxFileSize {
		return fmt.Errorf("%s: larger than %d bytes: refused", path, MaxFileSize)
	}
	line, brackets, dots := 1, 0, 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '\n':
			line, dots = line+1, 0
		case '#':
			for i+1 < len(b) && b[i+1] != '\n' {
				i++
			}
		case '"', '\'':
			end, lines := skipString(b, i)
			i, line = end, line+lines
		case '[', '{':
			brackets++
		case ']', '}':
			brackets, dots = max(brackets-1, 0), 0
		case ',', '=':
			dots = 0
		case '.':
			dots++
		}
		if brackets+dots > MaxDepth {
			return fmt.Errorf("%s:%d: nested more than %d deep (tables, arrays, dotted keys): refused", path, line, MaxDepth)
		}
	}
	return nil
}

// skipString returns the index of the last byte of the string that starts at
// b[i] (a quote) and how many newlines it holds. A basic string ends at its
// unescaped quote, a literal one at its quote, a multi-line one at three
// quotes; a one-line string ends at a newline too, where the decoder will
// report it.
func skipString(b []byte, i int) (end, lines int) {
	q := b[i]
	multi := i+2 < len(b) && b[i+1] == q && b[i+2] == q
	if multi {
		i += 2
	}
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\\' && q == '"':
			if i+1 < len(b) && b[i+1] == '\n' {
				lines++
			}
			i++
		case c == '\n' && !multi:
			return i - 1, lines
		case c == '\n':
			lines++
		case c == q && !multi:
			return i, lines
		case c == q && i+2 < len(b) && b[i+1] == q && b[i+2] == q:
			return i + 2, lines
		}
	}
	return len(b) - 1, lines
}
