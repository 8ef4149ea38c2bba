package processor

import (
	"bytes"
	"slices"
	"unicode/utf8"
)

// appendCanonical appends raw's canonical JSON (canonicalJSON) to dst
// without decoding it into maps and interfaces: whitespace is dropped,
// object members are sorted by key, everything else is copied as it is. It
// reports false, and canonicalSlow decides, for whatever it would have to
// re-encode rather than copy: escapes in strings, characters the encoder
// escapes (<, >, &, U+2028, U+2029, invalid UTF-8), duplicate keys,
// anything after the first value, and invalid JSON. LiveChat payloads
// almost never have any of those, and a state change's canonical payload is
// otherwise the costliest step of its identity.
func appendCanonical(dst, raw []byte) ([]byte, bool) {
	c := canonicalizer{in: raw}
	out, ok := c.value(dst, 0)
	if !ok {
		return dst, false
	}
	c.space()
	if c.pos != len(c.in) {
		return dst, false
	}
	return out, true
}

type canonicalizer struct {
	in  []byte
	pos int
}

// maxCanonicalDepth bounds the recursion; deeper documents take the slow path.
const maxCanonicalDepth = 200

// jsonMember is one object member already written to the output: its key and
// the span of `"key":value` (keys compare without their quotes).
type jsonMember struct {
	key        []byte
	start, end int
}

func (c *canonicalizer) space() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *canonicalizer) value(dst []byte, depth int) ([]byte, bool) {
	if depth > maxCanonicalDepth {
		return dst, false
	}
	c.space()
	if c.pos >= len(c.in) {
		return dst, false
	}
	switch ch := c.in[c.pos]; {
	case ch == '{':
		return c.object(dst, depth)
	case ch == '[':
		return c.array(dst, depth)
	case ch == '"':
		s, ok := c.str()
		if !ok {
			return dst, false
		}
		return append(dst, s...), true
	case ch == '-' || ch >= '0' && ch <= '9':
		return c.number(dst)
	case ch == 't':
		return c.literal(dst, "true")
	case ch == 'f':
		return c.literal(dst, "false")
	case ch == 'n':
		return c.literal(dst, "null")
	}
	return dst, false
}

func (c *canonicalizer) literal(dst []byte, lit string) ([]byte, bool) {
	if !bytes.HasPrefix(c.in[c.pos:], []byte(lit)) {
		return dst, false
	}
	c.pos += len(lit)
	return append(dst, lit...), true
}

// str returns the string at pos with its quotes, when it can be copied as
// it is.
func (c *canonicalizer) str() ([]byte, bool) {
	start := c.pos
	i := c.pos + 1
	for i < len(c.in) {
		b := c.in[i]
		switch {
		case b == '"':
			c.pos = i + 1
			return c.in[start:c.pos], true
		case b == '\\' || b < 0x20 || b == '<' || b == '>' || b == '&':
			return nil, false
		case b < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(c.in[i:])
			if r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
				return nil, false
			}
			i += n
		}
	}
	return nil, false
}

// number copies a number that follows the JSON grammar.
func (c *canonicalizer) number(dst []byte) ([]byte, bool) {
	in, i := c.in, c.pos
	digits := func() int {
		n := 0
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if in[i] == '-' {
		i++
	}
	if i < len(in) && in[i] == '0' {
		i++
	} else if digits() == 0 {
		return dst, false
	}
	if i < len(in) && in[i] == '.' {
		i++
		if digits() == 0 {
			return dst, false
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		if digits() == 0 {
			return dst, false
		}
	}
	out := append(dst, in[c.pos:i]...)
	c.pos = i
	return out, true
}

func (c *canonicalizer) array(dst []byte, depth int) ([]byte, bool) {
	c.pos++ // [
	dst = append(dst, '[')
	c.space()
	if c.pos < len(c.in) && c.in[c.pos] == ']' {
		c.pos++
		return append(dst, ']'), true
	}
	for {
		var ok bool
		if dst, ok = c.value(dst, depth+1); !ok {
			return dst, false
		}
		c.space()
		if c.pos >= len(c.in) {
			return dst, false
		}
		switch c.in[c.pos] {
		case ',':
			c.pos++
			dst = append(dst, ',')
		case ']':
			c.pos++
			return append(dst, ']'), true
		default:
			return dst, false
		}
	}
}

// object writes the members in input order, then, unless they were
// already sorted, rewrites them sorted by key.
func (c *canonicalizer) object(dst []byte, depth int) ([]byte, bool) {
	c.pos++ // {
	dst = append(dst, '{')
	open := len(dst)
	c.space()
	if c.pos < len(c.in) && c.in[c.pos] == '}' {
		c.pos++
		return append(dst, '}'), true
	}
	var stack [16]jsonMember
	ms := stack[:0]
	sorted := true
	for {
		c.space()
		if c.pos >= len(c.in) || c.in[c.pos] != '"' {
			return dst, false
		}
		key, ok := c.str()
		if !ok {
			return dst, false
		}
		c.space()
		if c.pos >= len(c.in) || c.in[c.pos] != ':' {
			return dst, false
		}
		c.pos++
		if len(ms) > 0 {
			dst = append(dst, ',')
		}
		start := len(dst)
		dst = append(dst, key...)
		dst = append(dst, ':')
		if dst, ok = c.value(dst, depth+1); !ok {
			return dst, false
		}
		if len(ms) > 0 {
			switch cmp := bytes.Compare(ms[len(ms)-1].key, key[1:len(key)-1]); {
			case cmp == 0:
				return dst, false // duplicate: the decoder keeps the last
			case cmp > 0:
				sorted = false
			}
		}
		ms = append(ms, jsonMember{key: key[1 : len(key)-1], start: start, end: len(dst)})
		c.space()
		if c.pos >= len(c.in) {
			return dst, false
		}
		if c.in[c.pos] == '}' {
			c.pos++
			break
		}
		if c.in[c.pos] != ',' {
			return dst, false
		}
		c.pos++
	}
	if !sorted {
		slices.SortFunc(ms, func(a, b jsonMember) int { return bytes.Compare(a.key, b.key) })
		for i := 1; i < len(ms); i++ {
			if bytes.Equal(ms[i-1].key, ms[i].key) {
				return dst, false
			}
		}
		written := bytes.Clone(dst[open:])
		dst = dst[:open]
		for i, m := range ms {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, written[m.start-open:m.end-open]...)
		}
	}
	return append(dst, '}'), true
}
