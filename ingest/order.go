package ingest

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// keyOrder keeps each record key's webhooks in arrival order on their way
// to Kafka or the spool. The processor's state rules (a state that flips
// back is a new event, a retry is not) read a chat's events in log order,
// so a later webhook of a chat must never reach Kafka before an earlier
// one that ingest acknowledged. Two things could reorder them:
//
//   - A request waiting for Kafka's ack times out into the spool while the
//     next one of the same chat, a moment later, goes straight to Kafka and
//     is acked first. So a key's requests take turns: the next one decides
//     where to go only after the previous one was stored (or failed).
//   - The spool is full but Kafka is back: a new record may go straight to
//     Kafka only if no record of its key waits in the spool. So the keys of
//     spooled records are counted (from Open's scan for a previous run's
//     spool, on append, and down again when the drain delivered them).
//
// Turns cost nothing when a key has one request at a time, which is how
// LiveChat sends a chat's webhooks; several at once wait for each other,
// each for at most the bound the caller puts on the wait.
type keyOrder struct {
	seed   maphash.Seed
	shards [64]orderShard
}

type orderShard struct {
	mu   sync.Mutex
	keys map[string]*keyState
}

type keyState struct {
	tail    chan struct{} // closed when the latest turn ended; nil when none is out
	turns   int           // turns taken and not yet ended
	spooled int64         // records of the key in the spool, not yet delivered
}

func newKeyOrder() *keyOrder {
	o := &keyOrder{seed: maphash.MakeSeed()}
	for i := range o.shards {
		o.shards[i].keys = map[string]*keyState{}
	}
	return o
}

func (o *keyOrder) shard(key string) *orderShard {
	return &o.shards[maphash.String(o.seed, key)%uint64(len(o.shards))]
}

// turn is one request's place in its key's line.
type turn struct {
	o    *keyOrder
	key  string
	done chan struct{}
}

// wait takes a turn for key and returns once every earlier turn of the key
// ended, or with ctx's error or context.DeadlineExceeded after bound (0:
// no bound) — the turn then ends by itself after the earlier ones: the
// caller must not store the record, or it could overtake them. end must be
// called exactly once after a nil error. The bound is a timer started only
// when the turn has to wait: nearly every webhook goes straight through.
func (o *keyOrder) wait(ctx context.Context, key string, bound time.Duration) (*turn, error) {
	sh := o.shard(key)
	t := &turn{o: o, key: key, done: make(chan struct{})}
	sh.mu.Lock()
	st := sh.keys[key]
	if st == nil {
		st = &keyState{}
		sh.keys[key] = st
	}
	prev := st.tail
	st.tail = t.done
	st.turns++
	sh.mu.Unlock()
	if prev == nil {
		return t, nil
	}
	var expired <-chan time.Time
	if bound > 0 {
		tm := time.NewTimer(bound)
		defer tm.Stop()
		expired = tm.C
	}
	var err error
	select {
	case <-prev:
		return t, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-expired:
		err = context.DeadlineExceeded
	}
	go func() { <-prev; t.end() }()
	return nil, err
}

// end lets the key's next turn go.
func (t *turn) end() {
	sh := t.o.shard(t.key)
	sh.mu.Lock()
	st := sh.keys[t.key]
	st.turns--
	if st.tail == t.done {
		st.tail = nil
	}
	if st.turns == 0 && st.spooled <= 0 {
		delete(sh.keys, t.key)
	}
	sh.mu.Unlock()
	close(t.done)
}

// spooled is how many records of key the spool holds.
func (o *keyOrder) spooled(key string) int64 {
	sh := o.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st := sh.keys[key]; st != nil {
		return st.spooled
	}
	return 0
}

// addSpooled counts n records of key into (n > 0) or out of (n < 0) the
// spool.
func (o *keyOrder) addSpooled(key string, n int64) {
	sh := o.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.keys[key]
	if st == nil {
		if n <= 0 {
			return // delivered records of a key not counted (past a spool fault)
		}
		st = &keyState{}
		sh.keys[key] = st
	}
	st.spooled = max(0, st.spooled+n)
	if st.turns == 0 && st.spooled == 0 {
		delete(sh.keys, key)
	}
}

// len is the number of keys tracked (tests: nothing leaks).
func (o *keyOrder) len() int {
	n := 0
	for i := range o.shards {
		sh := &o.shards[i]
		sh.mu.Lock()
		n += len(sh.keys)
		sh.mu.Unlock()
	}
	return n
}
