package processor

import "sort"

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

// keptChange is one kept state change of a subject: when it was received,
// the state it left, and where it is in the log (the subject's records share
// a partition: ingest keys them by chat, agent or entity).
type keptChange struct {
	ms       uint64 // received-at
	state    string
	key      string // the change's dedup_key (its whole content)
	part     int32
	off      int64
	idx      uint16
	insertID uint64 // the INSERT that stored it (0: decided here, not read back)
	eventID  string // its event_id when read back (ExplainRetries)
}

// precedes reports whether k comes before the row r in the log: same
// partition, earlier offset, or earlier row of the same record.
func (k *keptChange) precedes(r *Row) bool {
	return k.part == r.SrcPartition && (k.off < r.SrcOffset || (k.off == r.SrcOffset && k.idx < r.SrcIndex))
}

// is reports whether k is the row r itself (r was stored before).
func (k *keptChange) is(r *Row) bool {
	return k.part == r.SrcPartition && k.off == r.SrcOffset && k.idx == r.SrcIndex
}

// subjectEntry is what is known about one subject: its kept changes, and
// the received-at range [lo, hi] for which that list is complete
// (ClickHouse was asked for it). Changes outside the range are still
// facts; the range only says where no lookup is needed.
type subjectEntry struct {
	kept   []keptChange
	lo, hi uint64
	loaded bool
}

// covers reports whether the entry is complete for [from, to].
func (e *subjectEntry) covers(from, to uint64) bool {
	return e.loaded && e.lo <= from && to <= e.hi
}

// last returns the subject's change in force when r was received, as far as
// the log before r knows: the kept change before r in the log with the
// latest received-at not after r's (ties: the later in the log). It also
// reports r itself when r was kept before (a replay or a re-read).
func (e *subjectEntry) last(r *Row) (prev, self *keptChange) {
	for i := range e.kept {
		k := &e.kept[i]
		if k.is(r) {
			return nil, k
		}
		if !k.precedes(r) || k.ms > r.ReceivedAtMs {
			continue
		}
		if prev == nil || k.ms > prev.ms || (k.ms == prev.ms && (k.off > prev.off || (k.off == prev.off && k.idx > prev.idx))) {
			prev = k
		}
	}
	return prev, nil
}

const maxKeptPerSubject = 64

// add records a kept change (once per log position).
func (e *subjectEntry) add(k keptChange) {
	for i := range e.kept {
		if e.kept[i].part == k.part && e.kept[i].off == k.off && e.kept[i].idx == k.idx {
			if k.insertID != 0 {
				e.kept[i].insertID = k.insertID
			}
			return
		}
	}
	e.kept = append(e.kept, k)
	if len(e.kept) > maxKeptPerSubject {
		// Forget the oldest half; the complete range shrinks accordingly.
		sort.Slice(e.kept, func(i, j int) bool { return e.kept[i].ms < e.kept[j].ms })
		half := len(e.kept) / 2
		if cut := e.kept[half-1].ms + 1; e.lo < cut {
			e.lo = cut
			if e.lo > e.hi {
				e.loaded = false
			}
		}
		e.kept = append([]keptChange(nil), e.kept[half:]...)
	}
}

// subjectCache holds subjectEntries by subject, two generations bounded by
// max subjects each. Only the preparer uses it.
type subjectCache struct {
	max      int
	cur, old map[string]*subjectEntry
}

func newSubjectCache(max int) *subjectCache {
	return &subjectCache{max: max, cur: map[string]*subjectEntry{}}
}

// get returns the entry for key, creating it (unloaded) when absent.
func (c *subjectCache) get(key string) *subjectEntry {
	if e, ok := c.cur[key]; ok {
		return e
	}
	e, ok := c.old[key]
	if ok {
		delete(c.old, key)
	} else {
		e = &subjectEntry{}
	}
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, map[string]*subjectEntry{}
	}
	c.cur[key] = e
	return e
}

// peek returns the entry without creating or promoting it.
func (c *subjectCache) peek(key string) *subjectEntry {
	if e, ok := c.cur[key]; ok {
		return e
	}
	return c.old[key]
}

func (c *subjectCache) len() int { return len(c.cur) + len(c.old) }

// reset forgets every subject.
func (c *subjectCache) reset() { c.cur, c.old = map[string]*subjectEntry{}, nil }
