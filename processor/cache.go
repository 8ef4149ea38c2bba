package processor

import (
	"sort"
	"strings"
)

// idCache remembers event IDs this process stored or saw stored, so most
// duplicates are dropped without asking ClickHouse. Two generations of at
// most max IDs each: when the current one is full the older is dropped.
// Only the flusher goroutine uses it.
type idCache struct {
	max      int
	cur, old map[eventID]struct{}
}

func newIDCache(max int) *idCache {
	return &idCache{max: max, cur: make(map[eventID]struct{}, min(max, 1<<16))}
}

func (c *idCache) has(id eventID) bool {
	if _, ok := c.cur[id]; ok {
		return true
	}
	_, ok := c.old[id]
	return ok
}

func (c *idCache) add(id eventID) {
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, make(map[eventID]struct{}, min(c.max, 1<<16))
	}
	c.cur[id] = struct{}{}
}

func (c *idCache) len() int { return len(c.cur) + len(c.old) }

// reset forgets every ID.
func (c *idCache) reset() { c.cur, c.old = make(map[eventID]struct{}, min(c.max, 1<<16)), nil }

// windowEntry is what is known about one dedup key: the received-at times
// (ms) of its kept events, and the received-at range [lo, hi] for which
// that list is complete (ClickHouse was asked for it). Kept times outside
// the range are still facts; the range only says where no lookup is needed.
type windowEntry struct {
	kept   []uint64
	lo, hi uint64
	loaded bool
}

// covers reports whether the entry is complete for [from, to].
func (e *windowEntry) covers(from, to uint64) bool {
	return e.loaded && e.lo <= from && to <= e.hi
}

// within reports whether a kept event lies less than window ms from t.
func (e *windowEntry) within(t, window uint64) bool {
	for _, k := range e.kept {
		d := k - t
		if t > k {
			d = t - k
		}
		if d < window {
			return true
		}
	}
	return false
}

const maxKeptPerKey = 64

func (e *windowEntry) addKept(t uint64) {
	for _, k := range e.kept {
		if k == t {
			return
		}
	}
	e.kept = append(e.kept, t)
	if len(e.kept) > maxKeptPerKey {
		// Forget the oldest half; the complete range shrinks accordingly.
		sort.Slice(e.kept, func(i, j int) bool { return e.kept[i] < e.kept[j] })
		half := len(e.kept) / 2
		if cut := e.kept[half-1] + 1; e.lo < cut {
			e.lo = cut
			if e.lo > e.hi {
				e.loaded = false
			}
		}
		e.kept = append([]uint64(nil), e.kept[half:]...)
	}
}

// windowCache holds windowEntries by dedup key, two generations bounded by
// max keys each. Only the flusher goroutine uses it.
type windowCache struct {
	max      int
	cur, old map[string]*windowEntry
}

func newWindowCache(max int) *windowCache {
	return &windowCache{max: max, cur: map[string]*windowEntry{}}
}

// get returns the entry for key, creating it (unloaded) when absent.
func (c *windowCache) get(key string) *windowEntry {
	if e, ok := c.cur[key]; ok {
		return e
	}
	e, ok := c.old[key]
	if ok {
		delete(c.old, key)
	} else {
		e = &windowEntry{}
	}
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, map[string]*windowEntry{}
	}
	// The key may point into a row's buffer: do not keep that alive.
	c.cur[strings.Clone(key)] = e
	return e
}

// peek returns the entry without creating or promoting it.
func (c *windowCache) peek(key string) *windowEntry {
	if e, ok := c.cur[key]; ok {
		return e
	}
	return c.old[key]
}

func (c *windowCache) len() int { return len(c.cur) + len(c.old) }

// reset forgets every key.
func (c *windowCache) reset() { c.cur, c.old = map[string]*windowEntry{}, nil }
