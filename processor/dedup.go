package processor

import (
	"context"
	"sync"
	"time"
)

// deduper decides which rows of a batch are stored already or are retries
// (dedup). It owns the memory that decides most rows without ClickHouse:
// the ID cache and the state changes of recent subjects (cache.go). Only
// the preparer decides, batch after batch, each decision building on the
// previous ones.
type deduper struct {
	window uint64 // DedupWindow in ms
	topic  string // the raw topic, whose records the state-change lookup reads
	st     lookups
	retry  func(ctx context.Context, what string, op func() error) error

	// gate is held while a batch is prepared, and by a rewind from the
	// moment it empties the caches until the batches are dropped: no
	// decision about a dropped batch may enter the emptied caches.
	gate     sync.Mutex
	ids      *idCache
	subjects *subjectCache
}

// lookups are the ClickHouse queries de-duplication needs (store.go).
type lookups interface {
	storedIDs(ctx context.Context, rows []*Row) (map[string]storedAt, error)
	keptChanges(ctx context.Context, topic string, l *stateLookup) (map[string][]keptChange, error)
}

func newDeduper(cfg Config, topic string, st lookups, retry func(context.Context, string, func() error) error) *deduper {
	return &deduper{
		window:   uint64(cfg.DedupWindow / time.Millisecond),
		topic:    topic,
		st:       st,
		retry:    retry,
		ids:      newIDCache(cfg.IDCacheSize),
		subjects: newSubjectCache(cfg.WindowCacheSize),
	}
}

// reset forgets every decision (they may be about rows that were not
// stored). Caller holds gate.
func (d *deduper) reset() {
	d.ids.reset()
	d.subjects.reset()
}

// dedupResult is what dedup decided for a batch.
type dedupResult struct {
	keep []Row // rows to insert, in order (compacted into the batch's array)
	// dupID: rows already stored (server identity, or this very record's
	// state change stored before); dupWin: retries of a kept state change.
	dupID, dupWin int
	// stored are the INSERTs that stored some of this batch's records
	// before (the records were read again: a failed INSERT, a crash before
	// the commit, a replay). Their derived tables may lack rows (repair).
	stored map[uint64]struct{}
}

// dedup returns the rows of a batch that are not stored yet and are not
// retries. It asks ClickHouse only about what memory cannot decide; lookups
// are retried until they succeed (or ctx ends: then the error).
//
// Identity rows: the first of equal IDs in the batch is kept, unless the ID
// is in the memory cache or already in events.
//
// State changes, in record order: a row is a retry when, for each of its
// subjects, the change in force when it was received (the last kept change
// before it in the log, by received-at) has the same state, the same whole
// content (a retry is the same body: a webhook that sets a property to the
// value it has, beside another, is not one) and was received less than
// DedupWindow before it. "Before it in the log" makes
// the decision a function of the log alone: replaying the topic, a
// restart or a crash decide the same, whatever was stored after the row
// (a webhook that waited in ingest's spool is judged by what the log held
// before it, in received-at order, so a late first delivery is not taken
// for a retry of its own later repeat). What ClickHouse holds for a
// subject is loaded once for the received-at range the batch needs, then
// memory is complete for that range.
//
// The kept rows' IDs enter the ID cache at once: later batches must see
// them even before their insert completes (it completes, or a rewind
// empties the caches). Caller holds gate.
func (d *deduper) dedup(ctx context.Context, rows []Row) (dedupResult, error) {
	res := dedupResult{stored: map[uint64]struct{}{}}
	window := d.window

	// Identity rows: batch-local and memory first.
	seen := make(map[eventID]struct{}, len(rows))
	var ask []int // indexes of identity rows memory cannot decide
	drop := make([]bool, len(rows))
	need := stateLookup{subjects: map[string]struct{}{}}
	for i := range rows {
		r := &rows[i]
		if len(r.DedupSubjects) > 0 {
			lo := sub(r.ReceivedAtMs, window)
			for _, s := range r.DedupSubjects {
				if e := d.subjects.peek(s); e == nil || !e.covers(lo, r.ReceivedAtMs) {
					need.add(s, lo, r)
				}
			}
			continue
		}
		if _, dup := seen[r.id]; dup || d.ids.has(r.id) {
			drop[i] = true
			res.dupID++
			continue
		}
		seen[r.id] = struct{}{}
		ask = append(ask, i)
	}

	if len(ask) > 0 {
		look := make([]*Row, len(ask))
		for j, i := range ask {
			look[j] = &rows[i]
		}
		var stored map[string]storedAt
		if err := d.retry(ctx, "look up stored event ids", func() error {
			var e error
			stored, e = d.st.storedIDs(ctx, look)
			return e
		}); err != nil {
			return res, err
		}
		for _, i := range ask {
			r := &rows[i]
			at, ok := stored[r.EventID]
			if !ok {
				continue
			}
			drop[i] = true
			res.dupID++
			d.ids.add(r.id)
			if at.part == r.SrcPartition && at.off == r.SrcOffset && at.idx == r.SrcIndex && at.topic == r.SrcTopic && at.insertID != 0 {
				res.stored[at.insertID] = struct{}{}
			}
		}
	}

	if len(need.keys) > 0 {
		var kept map[string][]keptChange
		if err := d.retry(ctx, "look up state changes", func() error {
			var e error
			kept, e = d.st.keptChanges(ctx, d.topic, &need)
			return e
		}); err != nil {
			return res, err
		}
		for _, s := range need.keys {
			e := d.subjects.get(s)
			for _, k := range kept[s] {
				e.add(k)
			}
			if e.loaded && e.lo <= need.hi && need.lo <= e.hi {
				e.lo, e.hi = min(e.lo, need.lo), max(e.hi, need.hi)
			} else {
				e.lo, e.hi = need.lo, need.hi
			}
			e.loaded = true
		}
	}
	for i := range rows {
		r := &rows[i]
		if len(r.DedupSubjects) == 0 {
			continue
		}
		self, repeats := decide(r, window, d.subjects.get)
		switch {
		case self != nil:
			// This record's change was stored before (read again).
			drop[i] = true
			res.dupID++
			if self.insertID != 0 {
				res.stored[self.insertID] = struct{}{}
			}
		case repeats != nil:
			drop[i] = true
			res.dupWin++
		default:
			for j, s := range r.DedupSubjects {
				d.subjects.get(s).add(keptChange{ms: r.ReceivedAtMs, state: r.DedupStates[j], key: r.DedupKey,
					part: r.SrcPartition, off: r.SrcOffset, idx: r.SrcIndex})
			}
		}
	}

	// Compact in place: the batch's rows are not needed afterwards.
	keep := rows[:0]
	for i := range rows {
		if !drop[i] {
			keep = append(keep, rows[i])
		}
	}
	clear(rows[len(keep):])
	res.keep = keep
	for i := range keep {
		if len(keep[i].DedupSubjects) == 0 {
			d.ids.add(keep[i].id)
		}
	}
	return res, nil
}

// decide applies the rule for state changes to r, given its subjects'
// entries (entry may return nil: nothing known). self is r's own change
// when it was kept before (read again); otherwise repeats is the kept change
// of r's first subject that r repeats, nil when r is not a retry: for some
// subject the change in force when r was received differs in state or
// whole content, is DedupWindow ms or more older, or is unknown.
func decide(r *Row, window uint64, entry func(subject string) *subjectEntry) (self, repeats *keptChange) {
	retry := true
	for j, s := range r.DedupSubjects {
		e := entry(s)
		if e == nil {
			retry = false
			continue
		}
		prev, me := e.last(r)
		if me != nil {
			return me, nil
		}
		if prev == nil || r.ReceivedAtMs-prev.ms >= window || prev.state != r.DedupStates[j] || prev.key != r.DedupKey {
			retry = false
			continue
		}
		if j == 0 {
			repeats = prev
		}
	}
	if !retry {
		return nil, nil
	}
	return nil, repeats
}

// stateLookup is what the state-change lookup of a batch must cover: the
// subjects memory cannot decide, the received-at range [lo, hi], and the
// occurred_at ranges the stored changes can have (their received-at, or
// for event edits the event's own time), for partition pruning.
type stateLookup struct {
	keys     []string
	subjects map[string]struct{}
	lo, hi   uint64
	occ      occRanges
	any      bool
}

func (l *stateLookup) add(subject string, lo uint64, r *Row) {
	if _, ok := l.subjects[subject]; !ok {
		l.subjects[subject] = struct{}{}
		l.keys = append(l.keys, subject)
	}
	if !l.any || lo < l.lo {
		l.lo = lo
	}
	l.hi = max(l.hi, r.ReceivedAtMs)
	l.any = true
	if r.ownTime {
		l.occ.add(r)
	}
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
