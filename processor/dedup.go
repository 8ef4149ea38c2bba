package processor

import (
	"context"
	"time"
)

// dedup returns the rows of a batch that are not stored yet, in order
// (compacted into rows' own array), and
// how many were dropped as identity and as window duplicates. It asks
// ClickHouse only about what memory cannot decide; lookups are retried
// until they succeed (or ctx ends: then the error).
//
// Identity rows: the first of equal IDs in the batch is kept, unless the ID
// is in the memory cache or already in events.
//
// Windowed rows, in record order: dropped when a kept event with the same
// dedup key was received less than DedupWindow away, else kept (and
// remembered as kept). What ClickHouse holds for a key is loaded once for
// the received-at range the batch needs (covering restarts and other
// processors), then memory is complete for that range.
func (p *Processor) dedup(ctx context.Context, rows []Row) (keep []Row, dupID, dupWin int, err error) {
	window := uint64(p.cfg.DedupWindow / time.Millisecond)

	// Identity rows: batch-local and memory first.
	seen := make(map[eventID]struct{}, len(rows))
	var ask []int // indexes of identity rows memory cannot decide
	drop := make([]bool, len(rows))
	var needKeys []string
	needSet := map[string]struct{}{}
	var winLo, winHi uint64
	for i := range rows {
		r := &rows[i]
		if r.DedupKey != "" {
			e := p.window.peek(r.DedupKey)
			lo, hi := sub(r.ReceivedAtMs, window), r.ReceivedAtMs+window
			if e == nil || !e.covers(lo, hi) {
				if _, ok := needSet[r.DedupKey]; !ok {
					needSet[r.DedupKey] = struct{}{}
					needKeys = append(needKeys, r.DedupKey)
				}
				if winLo == 0 || lo < winLo {
					winLo = lo
				}
				winHi = max(winHi, hi)
			}
			continue
		}
		if _, dup := seen[r.id]; dup || p.ids.has(r.id) {
			drop[i] = true
			dupID++
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
		var stored map[string]struct{}
		if err := p.retry(ctx, "look up stored event ids", func() error {
			var e error
			stored, e = p.st.storedIDs(ctx, look)
			return e
		}); err != nil {
			return nil, 0, 0, err
		}
		for _, i := range ask {
			if _, ok := stored[rows[i].EventID]; ok {
				drop[i] = true
				dupID++
				p.ids.add(rows[i].id)
			}
		}
	}

	if len(needKeys) > 0 {
		var kept map[string][]uint64
		if err := p.retry(ctx, "look up dedup keys", func() error {
			var e error
			kept, e = p.st.keptTimes(ctx, needKeys, winLo, winHi)
			return e
		}); err != nil {
			return nil, 0, 0, err
		}
		for _, k := range needKeys {
			e := p.window.get(k)
			for _, t := range kept[k] {
				e.addKept(t)
			}
			if e.loaded && e.lo <= winHi && winLo <= e.hi {
				e.lo, e.hi = min(e.lo, winLo), max(e.hi, winHi)
			} else {
				e.lo, e.hi = winLo, winHi
			}
			e.loaded = true
		}
	}
	for i := range rows {
		r := &rows[i]
		if r.DedupKey == "" {
			continue
		}
		e := p.window.get(r.DedupKey)
		if e.within(r.ReceivedAtMs, window) {
			drop[i] = true
			dupWin++
			continue
		}
		e.addKept(r.ReceivedAtMs)
	}

	// Compact in place: the batch's rows are not needed afterwards.
	keep = rows[:0]
	for i := range rows {
		if !drop[i] {
			keep = append(keep, rows[i])
		}
	}
	clear(rows[len(keep):])
	return keep, dupID, dupWin, nil
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
