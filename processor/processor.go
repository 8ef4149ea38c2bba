// Package processor turns raw LiveChat webhooks from Kafka into rows of the
// ClickHouse events table, each unique event exactly once.
//
// The flow, each step pointing at a function:
//
//  1. poll (Run): a franz-go consumer group on the raw topic, auto-commit
//     off, new groups start at the earliest offset.
//  2. decode (decodeAll): livechat.Decode in parallel workers; a record that
//     cannot be decoded or validated becomes a dead letter.
//  3. transform (Transform): pure, one wide row per event with its candidate
//     event_id (identity.go).
//  4. batch (process, seal): rows accumulate until BATCH_ROWS, BATCH_BYTES or
//     BATCH_LINGER. At most MaxPendingBatches sealed batches hold rows not
//     yet sent to ClickHouse; beyond that fetching pauses
//     (PauseFetchTopics), so memory stays bounded however large the backlog
//     and however long ClickHouse is away.
//  5. prepare (preparer), batch by batch in order: dead letters are
//     produced and duplicates dropped (prepare, dedup), one batch ahead of
//     the sender.
//  6. insert (flusher): each prepared batch is sent as one block of the
//     open INSERT into events (send) and its rows leave memory; the INSERT
//     is closed at INSERT_ROWS or INSERT_LINGER, when the input is drained
//     or when a rebalance or shutdown waits (closeInsertion, in the
//     background while the next INSERT fills). The server squashes the
//     blocks of one INSERT into one block before writing it. Then the
//     offsets of its batches are committed and their pipeline_batches rows
//     written (finish); commits stay in batch order.
//
// Exactly-once effect: an INSERT is written as one block, so it is stored
// whole or not at all (per table partition); before sending, IDs already
// stored are dropped (memory cache, then a ClickHouse lookup of the
// batch's IDs). Offsets are committed only after the INSERT completes, so
// a crash at any point either redoes the uncommitted batches (whose stored
// rows the lookups drop) or nothing. An INSERT that fails may still have
// been written, and its batches are no longer in memory: the processor
// then does what a restart does (recover, rewind): caches emptied, every
// uncommitted batch dropped, the consumer set back to the last stored
// offsets. On a rebalance (OnPartitionsRevoked) everything read is flushed
// and committed before the partitions go. ReplacingMergeTree on
// (organization_id, event_id) is the last safety net.
//
// Infrastructure failures (ClickHouse down, Kafka away) are retried forever
// with jittered exponential backoff and never reach the dead-letter topic;
// only records that cannot be decoded or validated go there.
package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/backoff"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// Processor consumes the raw topic and writes events. Create with New, run
// with Run; Stats may be called concurrently.
type Processor struct {
	cfg   Config
	kcfg  kafka.Config
	st    *store
	dir   Directory
	log   *slog.Logger
	users *UserCache

	// flusher-only state
	ids      *idCache
	subjects *subjectCache
	// repaired: INSERTs whose derived tables were checked (repair.go).
	repaired map[uint64]struct{}

	cl *kgo.Client

	// prepMu is held while a batch is de-duplicated (the memory caches
	// change): a rewind takes it to empty the caches between batches.
	prepMu sync.Mutex

	mu        sync.Mutex
	cond      *sync.Cond
	cur       *batch
	pending   []*batch // sealed and not committed, oldest first
	sealedSeq uint64
	doneSeq   uint64
	wantSeq   uint64 // a waiter (rebalance, shutdown) needs batches up to this one stored
	stopped   bool   // flusher gave up (shutdown timeout)
	paused    bool
	pollDone  bool            // pollLoop returned (shutdown)
	drained   bool            // the last poll returned nothing: no backlog
	failed    error           // a background insert close failed: the flusher must rewind
	rewindReq bool            // the flusher asks pollLoop to rewind
	lostGen   int             // onLost calls so far: an insertion opened before the last must not complete
	lost      map[int32]bool  // partitions lost and not assigned again: their records are ignored
	careful   map[int32]int64 // refused.go: per partition, insert batches one by one up to this offset
	// from is, per partition read, the offset after the last stored
	// record (or the first offset read): where a rewind restarts.
	from map[int32]kgo.EpochOffset

	// rng is range mode's state (rangemode.go); nil in live mode.
	rng *rangeState

	tel *procTel // spans and metrics (telemetry.go)

	stats Stats
}

// Stats are running totals since start.
type Stats struct {
	Records, Rows, Inserted, DupIdentity, DupWindow, DeadLetters atomic.Int64
	Batches, InsertRetries, Pauses                               atomic.Int64
	// Repaired counts derived-table rows written by repair;
	// RepairFailures the repair attempts that failed (retried).
	Repaired, RepairFailures atomic.Int64
}

// New checks the options and builds a Processor.
func New(o Options) (*Processor, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	cfg := o.Config.withDefaults()
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Processor{
		cfg:      cfg,
		kcfg:     o.Kafka,
		st:       &store{conn: o.ClickHouse, db: o.Database},
		dir:      o.Directory,
		log:      log,
		users:    NewUserCache(cfg.UserCacheSize),
		ids:      newIDCache(cfg.IDCacheSize),
		subjects: newSubjectCache(cfg.WindowCacheSize),
		repaired: map[uint64]struct{}{},
		from:     map[int32]kgo.EpochOffset{},
		lost:     map[int32]bool{},
		careful:  map[int32]int64{},
	}
	p.cond = sync.NewCond(&p.mu)
	p.cur = p.newBatch()
	p.tel = newProcTel(o.Telemetry, p)
	if p.dir != nil {
		p.dir = countingDirectory{p.dir, p.tel}
	}
	return p, nil
}

// Stats returns the running totals.
func (p *Processor) Stats() *Stats { return &p.stats }

// batch is what one flush handles: rows and dead letters of consecutive
// records, and the offsets to commit after them.
type batch struct {
	seq     uint64
	rows    []Row
	dead    []*kgo.Record
	offsets map[int32]kgo.EpochOffset // next offset to consume, per partition
	records int
	bytes   int64
	started time.Time
	minRecv uint64
	maxRecv uint64
	actions map[string]uint32

	// set by the flusher (taken, prepared, sent, dropped: under mu)
	taken    bool // the preparer has it
	prepared bool // de-duplicated: b.keep is ready to send
	sent     bool // rows sent to an insertion (released)
	dropped  bool // a rewind dropped it: it is read again

	parts         []int32
	keep          []Row
	rowsIn        int
	inserted      int
	dupID, dupWin int
	flushStart    time.Time
	lookupDur     time.Duration
	insertDur     time.Duration

	tel batchTel // telemetry.go
}

func (p *Processor) newBatch() *batch {
	// Rows are allocated once at the batch's expected size: growing a slice
	// of ~1 KiB structs by doubling would waste up to half of it.
	// A row counts ~1.6–2 KiB with its strings (rowOverhead is the struct
	// and short strings only); the estimate errs on the small side, as a
	// few unused slots cost far less than one doubling of the array.
	n := min(p.cfg.BatchRows, int(p.cfg.BatchBytes/(rowOverhead+384))+1)
	return &batch{rows: make([]Row, 0, n), offsets: map[int32]kgo.EpochOffset{}, actions: map[string]uint32{}}
}

// partitions lists the batch's source partitions, sorted.
func (b *batch) partitions() []int32 {
	out := make([]int32, 0, len(b.offsets))
	for part := range b.offsets {
		out = append(out, part)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// newInsertID is a random, non-zero INSERT id (events.insert_id).
func newInsertID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

func (b *batch) full(cfg Config) bool {
	return len(b.rows) >= cfg.BatchRows || b.bytes >= cfg.BatchBytes
}

// Run consumes until ctx is cancelled, then flushes what it read, commits
// and leaves the group (bounded by ShutdownTimeout). It returns nil on a
// clean shutdown.
func (p *Processor) Run(ctx context.Context) error {
	opts := []kgo.Opt{
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.kcfg.RawTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// Rebalance callbacks run only between polls, so a revoke sees every
		// polled record in a batch and can flush and commit them.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(p.onAssigned),
		kgo.OnPartitionsRevoked(p.onRevoked),
		kgo.OnPartitionsLost(p.onLost),
		kgo.FetchMaxBytes(p.cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(p.cfg.FetchMaxBytes / 4),
		kgo.MaxConcurrentFetches(2),
		kgo.SessionTimeout(p.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, p.cfg.SessionTimeout/6)),
	}
	if p.cfg.Range != nil { // range mode: own consumer, no group
		opts = p.rangeClientOpts()
	}
	opts = append(opts, p.tel.kafkaOpts(p.kcfg.DLQTopic)...)
	cl, err := kafka.NewClient(p.kcfg, opts...)
	if err != nil {
		return err
	}
	p.cl = cl
	ensureCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = kafka.EnsureTopics(ensureCtx, cl, p.kcfg, p.log, p.kcfg.RawTopic, p.kcfg.DLQTopic)
	cancel()
	var setting *kafka.SettingError
	if errors.As(err, &setting) { // a wrong password or CA: retrying cannot help
		cl.Close()
		return fmt.Errorf("processor: %w", err)
	}
	if err != nil && ctx.Err() == nil {
		p.log.Warn("could not ensure topics; continuing", "err", err)
	}

	// flushCtx outlives ctx by ShutdownTimeout so the last batch can land.
	flushCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	flusherDone := make(chan struct{})
	go func() {
		defer close(flusherDone)
		p.flusher(flushCtx)
	}()
	p.log.Info("processor started", "group", p.cfg.Group, "topic", p.kcfg.RawTopic, "batch_rows", p.cfg.BatchRows,
		"batch_bytes", p.cfg.BatchBytes, "batch_linger", p.cfg.BatchLinger, "dedup_window", p.cfg.DedupWindow)

	pollCtx := ctx
	if p.cfg.Range != nil { // range mode: the loop ends at the end offsets
		p.rangeWaitInserts(ctx)
		p.mu.Lock()
		pollCtx = p.rangeStart(ctx)
		p.mu.Unlock()
	}
	waitLag := p.startLag(ctx, cl)
	p.tel.running(cl)
	p.pollLoop(pollCtx)
	p.tel.stopped()
	defer waitLag()

	// Shutdown: flush everything read, then leave the group.
	timer := time.AfterFunc(p.cfg.ShutdownTimeout, hardStop)
	defer timer.Stop()
	p.mu.Lock()
	p.pollDone = true
	p.seal()
	last := p.sealedSeq
	p.mu.Unlock()
	ok := p.waitFlushed(last)
	p.mu.Lock()
	p.stopped = true
	p.cond.Broadcast()
	p.mu.Unlock()
	<-flusherDone
	cl.Close()
	if !ok {
		return errors.New("processor: shutdown: the last batches were not stored (timeout or insert failure; their offsets are not committed, they will be read again)")
	}
	p.log.Info("processor stopped", "inserted", p.stats.Inserted.Load(), "records", p.stats.Records.Load())
	return nil
}

func (p *Processor) pollLoop(ctx context.Context) {
	for ctx.Err() == nil {
		p.waitForRoom(ctx)
		if ctx.Err() != nil {
			return
		}
		// Poll at most until the current batch reaches its linger. While
		// the flusher is still busy with an earlier batch, an old batch keeps
		// growing instead (up to its size limits): flushing it earlier would
		// only queue it, and fewer, larger inserts are what ClickHouse (and
		// the materialized views on events) handle best.
		p.mu.Lock()
		wait := p.cfg.BatchLinger
		if p.cur.records > 0 {
			wait = p.cfg.BatchLinger - time.Since(p.cur.started)
			if wait <= 0 {
				if p.unsent() == 0 {
					p.seal()
				}
				wait = min(p.cfg.BatchLinger, 50*time.Millisecond)
			}
		}
		p.mu.Unlock()
		pollCtx, cancel := context.WithTimeout(ctx, wait)
		fetches := p.cl.PollRecords(pollCtx, p.pollMax()) // range mode's rate caps it
		cancel()
		fetches.EachError(func(topic string, part int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			p.log.Warn("fetch error", "topic", topic, "partition", part, "err", err)
		})
		recs := fetches.Records()
		if p.rng != nil { // range mode
			recs = p.rangeClip(ctx, recs)
		}
		p.mu.Lock()
		rewind := p.rewindReq
		if p.drained = len(recs) == 0; p.drained {
			p.cond.Broadcast()
		}
		p.mu.Unlock()
		if rewind {
			p.rewind(recs) // what was just fetched is dropped too
		} else if len(recs) > 0 {
			p.process(recs)
		}
		p.cl.AllowRebalance()
	}
}

// unsent counts the sealed batches whose rows are still in memory. Caller
// holds mu.
func (p *Processor) unsent() int {
	n := 0
	for _, b := range p.pending {
		if !b.sent {
			n++
		}
	}
	return n
}

// waitForRoom blocks while MaxPendingBatches sealed batches hold rows that
// are not sent to ClickHouse yet, with fetching paused meanwhile.
func (p *Processor) waitForRoom(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.unsent() < p.cfg.MaxPendingBatches {
		return
	}
	p.cl.PauseFetchTopics(p.kcfg.RawTopic)
	p.paused = true
	p.stats.Pauses.Add(1)
	p.log.Debug("paused fetching: ClickHouse is behind", "pending_batches", len(p.pending))
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	for p.unsent() >= p.cfg.MaxPendingBatches && ctx.Err() == nil && !p.stopped && !p.rewindReq {
		p.cond.Wait()
	}
	p.cl.ResumeFetchTopics(p.kcfg.RawTopic)
	p.paused = false
	p.log.Debug("resumed fetching", "pending_batches", len(p.pending))
}

// seal moves the current batch to the flush queue. Caller holds mu.
func (p *Processor) seal() {
	if p.cur.records == 0 {
		return
	}
	p.sealedSeq++
	p.cur.seq = p.sealedSeq
	p.pending = append(p.pending, p.cur)
	p.cur = p.newBatch()
	p.cond.Broadcast()
}

// waitFlushed waits until batch seq is stored and committed (the flusher
// closes the open insertion for it); false if the flusher stopped first.
func (p *Processor) waitFlushed(seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wantSeq = max(p.wantSeq, seq)
	p.cond.Broadcast()
	// A pending rewind drops the batches: their records are read again
	// (by us or the next owner), nothing to wait for.
	for p.doneSeq < seq && !p.stopped && !p.rewindReq {
		p.cond.Wait()
	}
	return p.doneSeq >= seq
}

// onAssigned waits until no insert from these partitions is still running
// on the server: a previous owner killed right after sending a batch (or
// one that lost the partitions while an INSERT was completing) leaves that
// insert to complete without it, and our lookups must see its rows. Polls
// wait for this callback, so nothing of these partitions is read, let alone
// inserted, before.
func (p *Processor) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	parts := assigned[p.kcfg.RawTopic]
	p.tel.rebalanced("assigned", parts)
	if len(parts) == 0 {
		return
	}
	p.mu.Lock()
	for _, part := range parts {
		delete(p.lost, part)
	}
	p.mu.Unlock()
	if err := p.waitInsertsDone(ctx, parts); err != nil {
		p.log.Warn("stopped waiting for the inserts of newly assigned partitions", "partitions", parts, "err", err)
	}
}

// waitInsertsDone returns once no insert naming one of parts runs on the
// server. It has no deadline: an insert still running after
// ZombieInsertWait is killed (KILL QUERY ... SYNC), and while ClickHouse
// cannot say, it asks again, saying why. It returns an error only when ctx
// ends.
func (p *Processor) waitInsertsDone(ctx context.Context, parts []int32) error {
	start := time.Now()
	reported := false
	for attempt := 0; ; attempt++ {
		running, err := p.st.runningInserts(ctx, p.kcfg.RawTopic)
		var busy []string
		for _, part := range parts {
			busy = append(busy, running[part]...)
		}
		switch {
		case err != nil:
			p.log.Warn("cannot tell whether inserts of these partitions still run; asking again before reading them", "partitions", parts, "err", err)
		case len(busy) == 0:
			return nil
		case time.Since(start) >= p.cfg.ZombieInsertWait:
			p.log.Warn("inserts of these partitions still running; killing them", "partitions", parts, "queries", busy)
			if err := p.st.killInserts(ctx, busy); err != nil {
				p.log.Warn("killing inserts failed; asking again", "err", err)
			}
		case !reported:
			p.log.Info("waiting for running inserts of these partitions", "partitions", parts, "queries", busy)
			reported = true
		}
		if err != nil {
			if !p.backoff(ctx, attempt) {
				return ctx.Err()
			}
			continue
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// onRevoked flushes and commits everything read before partitions go.
func (p *Processor) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	p.tel.rebalanced("revoked", revoked[p.kcfg.RawTopic])
	p.mu.Lock()
	p.seal()
	last := p.sealedSeq
	p.mu.Unlock()
	p.log.Info("partitions revoked: flushing before handing them over", "partitions", revoked[p.kcfg.RawTopic])
	p.waitFlushed(last)
	p.mu.Lock()
	for _, part := range revoked[p.kcfg.RawTopic] {
		delete(p.from, part)
	}
	p.mu.Unlock()
}

// onLost handles partitions lost without a revoke (session expired: a new
// owner may already read them). Their offsets are forgotten (committing
// them could rewind the new owner), and none of their rows may be inserted
// any more: the open INSERT is aborted and every uncommitted batch dropped,
// as after an insert error (the flusher rewinds the partitions we still
// own). An INSERT already completing names the lost partitions in its
// query id, so the new owner waits for it (or kills it) before reading.
func (p *Processor) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	parts := lost[p.kcfg.RawTopic]
	if len(parts) == 0 {
		return // franz-go calls it with nothing of ours (e.g. while Kafka is away)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tel.rebalanced("lost", parts)
	for _, b := range append(p.pending, p.cur) {
		for _, part := range parts {
			delete(b.offsets, part)
		}
	}
	for _, part := range parts {
		delete(p.from, part)
	}
	p.lostGen++
	for _, part := range parts {
		p.lost[part] = true
	}
	if p.failed == nil {
		p.failed = errPartitionsLost
	}
	p.cond.Broadcast()
	p.log.Warn("partitions lost: dropping their uncommitted rows", "partitions", parts)
}

// errPartitionsLost makes the flusher abort and rewind after onLost.
var errPartitionsLost = errors.New("partitions lost: uncommitted rows dropped")

type decoded struct {
	w   *livechat.Webhook
	err error
}

// decodeAll decodes records in parallel (decoding is the CPU-heavy part).
func (p *Processor) decodeAll(recs []*kgo.Record) []decoded {
	out := make([]decoded, len(recs))
	workers := min(p.cfg.DecodeWorkers, (len(recs)+63)/64)
	if workers <= 1 {
		for i, r := range recs {
			out[i].w, out[i].err = decodeSafely(r, p.cfg.Decode)
		}
		return out
	}
	var wg sync.WaitGroup
	chunk := (len(recs) + workers - 1) / workers
	for start := 0; start < len(recs); start += chunk {
		end := min(start+chunk, len(recs))
		wg.Go(func() {
			for i := start; i < end; i++ {
				out[i].w, out[i].err = decodeSafely(recs[i], p.cfg.Decode)
			}
		})
	}
	wg.Wait()
	return out
}

// ValidationError is a decoded webhook that lacks what its identity needs.
type ValidationError struct{ Reason string }

func (e *ValidationError) Error() string { return "invalid webhook: " + e.Reason }

func decodeRecord(r *kgo.Record, decode func([]byte) (*livechat.Webhook, error)) (*livechat.Webhook, error) {
	if decode == nil {
		decode = livechat.Decode
	}
	w, err := decode(r.Value)
	if err != nil {
		return nil, err
	}
	w.UseOrganization(wire.Header(r, wire.HeaderOrganization)) // v3.3 bodies: the organization ingest found for the license
	if err := validate(w); err != nil {
		return nil, err
	}
	return w, nil
}

// validate rejects webhooks whose natural key is empty: their IDs would
// collide with every other such webhook and drop real events.
func validate(w *livechat.Webhook) error {
	need := func(what string, vals ...string) error {
		for _, v := range vals {
			if v == "" {
				return &ValidationError{Reason: w.Action + " without " + what}
			}
		}
		return nil
	}
	switch b := w.Body.(type) {
	case *livechat.IncomingChat:
		th := b.Chat.Thread
		if th == nil && len(b.Chat.Threads) > 0 {
			th = &b.Chat.Threads[0]
		}
		if th == nil {
			return &ValidationError{Reason: w.Action + " without chat.thread"}
		}
		if err := need("chat.id and thread.id", b.Chat.ID, th.ID); err != nil {
			return err
		}
		for _, e := range th.Events {
			if e.ID == "" {
				return &ValidationError{Reason: w.Action + " with an event without id"}
			}
		}
	case *livechat.IncomingEvent:
		return need("chat_id and event.id", b.ChatID, b.Event.ID)
	case *livechat.EventUpdated:
		return need("chat_id and event.id", b.ChatID, b.Event.ID)
	case *livechat.EventDeleted:
		return need("chat_id and event_id", b.ChatID, b.EventID)
	case *livechat.IncomingRichMessagePostback:
		return need("chat_id and event_id", b.ChatID, b.EventID)
	case *livechat.ChatDeactivated:
		return need("chat_id and thread_id", b.ChatID, b.ThreadID)
	case *livechat.EventsMarkedAsSeen:
		return need("chat_id and user_id", b.ChatID, b.UserID)
	case *livechat.ThreadSummarySet:
		return need("chat_id and thread_id", b.ChatID, b.ThreadID)
	}
	return nil
}

// sourceOf reads the record's metadata; received-at falls back to the
// record timestamp (also stable across replays) when the header is absent.
func sourceOf(r *kgo.Record) Source {
	recv := r.Timestamp
	if h := wire.Header(r, wire.HeaderReceivedAt); h != "" {
		if t, err := wire.ParseTime(h); err == nil {
			recv = t
		}
	}
	return Source{
		Topic:         r.Topic,
		Partition:     r.Partition,
		Offset:        r.Offset,
		ReceivedAt:    recv.UTC(),
		RequestID:     wire.Header(r, wire.HeaderRequestID),
		BodySHA256:    wire.Header(r, wire.HeaderBodySHA256),
		IngestVersion: wire.Header(r, wire.HeaderIngestVersion),
	}
}

// process decodes, transforms and adds records to the current batch,
// sealing full batches.
func (p *Processor) process(recs []*kgo.Record) {
	dec := p.decodeAll(recs)
	p.stats.Records.Add(int64(len(recs)))
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range recs {
		if p.lost[r.Partition] {
			continue // fetched before the loss: the new owner reads it
		}
		b := p.cur
		if b.records == 0 {
			b.started = time.Now()
		}
		b.records++
		b.offsets[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
		if _, ok := p.from[r.Partition]; !ok {
			p.from[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
		if err := dec[i].err; err != nil {
			b.dead = append(b.dead, deadLetter(r, err))
			b.bytes += int64(len(r.Value)) + 256
			if p.tel.tracing && r.Context != nil { // a sampled trace (telemetry.go)
				p.tel.recordSpan(b, r, nil, err, nil)
			}
		} else {
			src := sourceOf(r)
			n := len(b.rows)
			b.rows = p.transformSafely(b, r, src, dec[i].w) // a panic dead-letters r (panic.go)
			for j := n; j < len(b.rows); j++ {
				b.bytes += b.rows[j].size()
			}
			if p.tel.tracing && r.Context != nil { // a sampled trace (telemetry.go)
				p.tel.recordSpan(b, r, dec[i].w, nil, b.rows[n:])
			}
			b.actions[dec[i].w.Action]++
			ms := uint64(max(src.ReceivedAt.UnixMilli(), 0))
			if b.minRecv == 0 || ms < b.minRecv {
				b.minRecv = ms
			}
			b.maxRecv = max(b.maxRecv, ms)
		}
		if b.full(p.cfg) {
			p.seal()
		}
	}
}

// deadLetter builds the DLQ record: the original key, value and headers,
// plus why and where from.
func deadLetter(r *kgo.Record, err error) *kgo.Record {
	stage := "decode"
	var de *livechat.DecodeError
	var ve *ValidationError
	var re *RefusedError
	switch {
	case errors.As(err, &de):
		stage = "decode-" + de.Stage
	case errors.As(err, &ve):
		stage = "validate"
	case errors.As(err, &re):
		stage = "insert"
	}
	headers := append([]kgo.RecordHeader(nil), r.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: wire.HeaderDLQError, Value: []byte(err.Error())},
		kgo.RecordHeader{Key: wire.HeaderDLQStage, Value: []byte(stage)},
		kgo.RecordHeader{Key: wire.HeaderDLQTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: wire.HeaderDLQPartition, Value: []byte(wire.FormatOffset(int64(r.Partition)))},
		kgo.RecordHeader{Key: wire.HeaderDLQOffset, Value: []byte(wire.FormatOffset(r.Offset))},
		kgo.RecordHeader{Key: wire.HeaderDLQAt, Value: []byte(wire.FormatTime(time.Now()))},
	)
	return &kgo.Record{Key: r.Key, Value: r.Value, Headers: headers}
}

// insertion is one open INSERT into events. Consecutive batches stream into
// it, each as one block sent as soon as the batch is de-duplicated (its rows
// are then released), and the server squashes the blocks into one block
// before writing (min_insert_block_size_rows / _bytes, 1M rows / 256 MiB by
// default): one part per table partition, and one run of the materialized
// views, for many batches. ClickHouse writes large blocks at about twice the
// per-row speed of 12k-row ones (BENCHMARKS.md), while the processor holds
// only a batch or two in memory. The offsets of its batches are committed
// after the INSERT completes.
type insertion struct {
	b        driver.Batch
	batches  []*batch
	parts    map[int32]bool // partitions named in the query id
	rows     int
	id       uint64 // insert_id of its rows
	lostGen  int    // p.lostGen when opened
	windowed int    // state changes (they rely on the subject cache until stored)
	opened   time.Time
	done     chan struct{} // closed when the close finished (committed or failed)
	tel      insertTel     // its span (telemetry.go)
}

func (in *insertion) last() uint64 { return in.batches[len(in.batches)-1].seq }

// covers reports whether b's partitions are named in the insert's query id.
func (in *insertion) covers(b *batch) bool {
	for _, part := range b.parts {
		if !in.parts[part] {
			return false
		}
	}
	return true
}

// flusher handles sealed batches in order until stopped: it de-duplicates
// a batch (prepare: decisions build on the previous batches', kept IDs and
// window times enter the memory caches as soon as they are decided), sends
// its rows as one block of the open insertion, and closes the insertion
// when it is large or old enough, when the input is drained or when
// someone waits for one of its batches (rebalance, shutdown). The close
// runs in the background (closeInsertion) while the next insertion fills;
// at most one close is in flight, so commits stay in batch order, each
// after every earlier batch is stored.
//
// When an insertion fails (ClickHouse away, a timeout), its batches' rows
// are no longer in memory: the flusher rewinds instead (recover). The
// consumer is set back to the last stored offsets and every uncommitted
// batch is read again, de-duplicated against ClickHouse with empty caches,
// which is what a restart does (and what the crash tests check).
func (p *Processor) flusher(ctx context.Context) {
	var ins, closing *insertion
	failures := 0
	fail := func(err error) bool {
		if ins != nil {
			_ = ins.b.Abort()
			p.tel.insertClosed(ins, err)
			ins = nil
		}
		if closing != nil {
			<-closing.done
			closing = nil
		}
		failures++
		return p.recover(ctx, err, failures)
	}
	// startClose closes ins in the background once the previous close is
	// done; an error is that previous close's failure: ins must not
	// complete (its commit would pass the failed batches).
	startClose := func() error {
		if closing != nil {
			<-closing.done
			if err := p.takeFailure(); err != nil {
				return err
			}
		}
		closing, ins = ins, nil
		go p.closeInsertion(ctx, closing)
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.preparer(ctx) })
	defer wg.Wait()
	defer func() {
		if ins != nil {
			_ = ins.b.Abort()
			p.tel.insertClosed(ins, errAborted)
		}
		if closing != nil {
			<-closing.done
		}
	}()
	for {
		b, closeNow, err := p.nextBatch(ctx, ins)
		switch {
		case err != nil:
			if !fail(err) {
				return
			}
			continue
		case closeNow:
			if err := startClose(); err != nil && !fail(err) {
				return
			}
			continue
		case b == nil:
			return
		}
		if p.carefulFor(b) {
			// refused.go: this batch on its own, after every earlier one.
			if ins != nil {
				if err := startClose(); err != nil {
					if !fail(err) {
						return
					}
					continue
				}
			}
			if closing != nil {
				<-closing.done
				closing = nil
				if err := p.takeFailure(); err != nil {
					if !fail(err) {
						return
					}
					continue
				}
			}
			if err := p.insertCareful(ctx, b); err != nil {
				if !fail(err) {
					return
				}
				continue
			}
			failures = 0
			continue
		}
		if closing != nil && p.closeFailed() {
			// Do not send more: the rewind re-reads this batch anyway.
			if !fail(p.takeFailure()) {
				return
			}
			continue
		}
		if ins != nil && !ins.covers(b) {
			// The query id must name every source partition.
			if err := startClose(); err != nil {
				if !fail(err) {
					return
				}
				continue
			}
		}
		if ins == nil {
			ins, err = p.openInsertion(ctx, b)
			if err != nil {
				if ctx.Err() != nil {
					p.abandon(b, err)
					return
				}
				if !fail(err) {
					return
				}
				continue
			}
		}
		if err := p.send(ins, b); err != nil {
			if !fail(err) {
				return
			}
			continue
		}
		failures = 0
		if ins.rows >= p.cfg.InsertRows || 2*ins.windowed >= p.cfg.WindowCacheSize {
			if err := startClose(); err != nil && !fail(err) {
				return
			}
		}
	}
}

// preparer de-duplicates sealed batches in order (prepare), one batch
// ahead of the sender, so the lookups of a batch overlap the sending of the
// previous one. Decisions build on the previous batches' (kept IDs and
// window times enter the memory caches as soon as they are decided).
func (p *Processor) preparer(ctx context.Context) {
	for {
		p.mu.Lock()
		var b *batch
		for b == nil && !p.stopped && ctx.Err() == nil {
			for _, pb := range p.pending {
				if !pb.taken {
					b = pb
					break
				}
			}
			if b == nil {
				p.cond.Wait()
			}
		}
		if b == nil {
			p.mu.Unlock()
			return
		}
		b.taken = true
		p.mu.Unlock()

		p.prepMu.Lock()
		p.mu.Lock()
		dropped := b.dropped
		p.mu.Unlock()
		var err error
		if !dropped {
			bctx, span := p.tel.batchSpan(ctx, b)
			err = p.prepare(bctx, b)
			span.End()
		}
		p.prepMu.Unlock()
		if err != nil {
			p.abandon(b, err)
			return
		}
		p.mu.Lock()
		b.prepared = true
		p.cond.Broadcast()
		p.mu.Unlock()
	}
}

// nextBatch waits for the next batch to send (the oldest unsent one, once
// prepared). It returns closeNow when
// the open insertion should be closed first: it is older than
// InsertLinger, someone waits for one of its batches, or the last poll
// found nothing more to read. nil, false, nil means stop; an error is a failed close that
// needs a rewind.
func (p *Processor) nextBatch(ctx context.Context, ins *insertion) (b *batch, closeNow bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if p.stopped || ctx.Err() != nil {
			return nil, false, nil
		}
		if p.failed != nil {
			e := p.failed
			p.failed = nil
			return nil, false, e
		}
		var next *batch // the oldest unsent batch: batches are sent in order
		for _, pb := range p.pending {
			if !pb.sent {
				next = pb
				break
			}
		}
		if next != nil && next.prepared {
			return next, false, nil
		}
		if ins != nil {
			age := time.Since(ins.opened)
			if p.wantSeq >= ins.last() || age >= p.cfg.InsertLinger || p.drained {
				return nil, true, nil
			}
			if timer == nil {
				timer = time.AfterFunc(p.cfg.InsertLinger-age, p.wake)
			}
		}
		p.cond.Wait()
	}
}

// wake wakes every waiter on p.cond.
func (p *Processor) wake() {
	p.mu.Lock()
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *Processor) closeFailed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed != nil
}

func (p *Processor) takeFailure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.failed
	p.failed = nil
	return err
}

// openInsertion starts an INSERT into events whose query id names b's
// partitions, so a new owner of a partition can wait for an insert that a
// crashed owner left running on the server (runningInserts).
func (p *Processor) openInsertion(ctx context.Context, b *batch) (*insertion, error) {
	parts := p.ownedPartitions(b.parts)
	id := newInsertID()
	qid := insertQueryID(p.st.db, p.kcfg.RawTopic, parts, strconv.FormatUint(id, 16))
	var ib driver.Batch = discardBatch{}
	if !p.dryRun() { // range mode's dry run inserts nothing
		var err error
		if ib, err = p.st.open(ctx, qid); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	gen := p.lostGen
	p.mu.Unlock()
	in := &insertion{b: ib, id: id, lostGen: gen, parts: map[int32]bool{}, opened: time.Now(), done: make(chan struct{})}
	for _, part := range parts {
		in.parts[part] = true
	}
	p.tel.insertOpened(ctx, in, qid)
	return in, nil
}

// ownedPartitions is the partitions this process reads (those it has read
// from since their last commit), at least b's.
func (p *Processor) ownedPartitions(must []int32) []int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := map[int32]bool{}
	for _, part := range must {
		set[part] = true
	}
	for part := range p.from {
		set[part] = true
	}
	out := make([]int32, 0, len(set))
	for part := range set {
		out = append(out, part)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// send appends b's kept rows to the insertion as one block and releases
// them; b stops counting against MaxPendingBatches.
func (p *Processor) send(in *insertion, b *batch) error {
	if err := p.lostSince(in); err != nil {
		return err
	}
	start := time.Now()
	if !p.dryRun() { // range mode's dry run inserts nothing
		if err := p.st.sendBlock(in.b, b.keep, in.id); err != nil {
			return err
		}
	}
	for i := range b.keep {
		if len(b.keep[i].DedupSubjects) > 0 {
			in.windowed++
		}
	}
	in.rows += len(b.keep)
	b.inserted = len(b.keep)
	b.insertDur = time.Since(start)
	in.batches = append(in.batches, b)
	p.tel.blockSent(in, b)
	p.mu.Lock()
	b.rows, b.keep = nil, nil
	b.sent = true
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// lostSince is errPartitionsLost when partitions were lost since the
// insertion opened: it may hold their rows and must not complete.
func (p *Processor) lostSince(in *insertion) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lostGen != in.lostGen {
		return errPartitionsLost
	}
	return nil
}

// closeInsertion completes the INSERT (the server writes the squashed block
// and runs the views) and commits its batches in order; on error it
// records the failure for the flusher. It closes in.done.
func (p *Processor) closeInsertion(ctx context.Context, in *insertion) {
	defer close(in.done)
	start := time.Now()
	err := p.lostSince(in)
	if err != nil {
		_ = in.b.Abort()
	} else {
		err = in.b.Send()
	}
	p.tel.insertClosed(in, err)
	if err != nil {
		p.mu.Lock()
		if p.failed == nil {
			p.failed = fmt.Errorf("insert of %d rows: %w", in.rows, err)
		}
		p.cond.Broadcast()
		p.mu.Unlock()
		return
	}
	last := in.batches[len(in.batches)-1]
	last.insertDur += time.Since(start)
	p.finish(p.tel.insertContext(ctx, in), in.batches, in.id)
}

// recover handles a failed insertion (ClickHouse away, a timeout, a lost
// connection): after backing off, it waits until no insert of our
// partitions still runs on the server (the failed one may be completing:
// the lookups must see its rows), empties the caches (they hold decisions
// about rows that may not be stored) and has the poll loop rewind to the
// last stored offsets. It returns false when the flusher must stop.
func (p *Processor) recover(ctx context.Context, cause error, attempt int) bool {
	p.stats.InsertRetries.Add(1)
	p.log.Warn("insert failed; reading the uncommitted records again", "attempt", attempt, "err", cause)
	if backoff.Refused(cause) {
		p.beCareful(cause)
	}
	if !p.backoff(ctx, attempt-1) {
		return false
	}
	parts := p.ownedPartitions(nil)
	if err := p.waitInsertsDone(ctx, parts); err != nil {
		return false
	}
	// Between two preparations: the caches may hold decisions about
	// dropped batches; the preparer skips batches dropped meanwhile.
	p.prepMu.Lock()
	defer p.prepMu.Unlock()
	p.ids.reset()
	p.subjects.reset()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pollDone {
		// Shutting down: nobody polls any more. The uncommitted records
		// are read again by the next owner.
		p.stopped = true
		p.cond.Broadcast()
		return false
	}
	p.rewindReq = true
	p.failed = nil // the rewind covers it
	p.cond.Broadcast()
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	for p.rewindReq && !p.pollDone && !p.stopped && ctx.Err() == nil {
		p.cond.Wait()
	}
	if p.rewindReq {
		p.stopped = true
		p.cond.Broadcast()
		return false
	}
	return true
}

// rewind drops every uncommitted batch and the records just polled, and
// sets the consumer back to the last stored offset of each partition. Only
// pollLoop calls it, between a poll and AllowRebalance (no revoke can run).
func (p *Processor) rewind(polled []*kgo.Record) {
	p.mu.Lock()
	// A partition first seen in the dropped poll restarts at its first
	// record: without this, its consumer would go on after it.
	for _, r := range polled {
		if _, ok := p.from[r.Partition]; !ok && !p.lost[r.Partition] {
			p.from[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
	}
	offs := make(map[int32]kgo.EpochOffset, len(p.from))
	for part, o := range p.from {
		offs[part] = o
	}
	for _, b := range p.pending {
		b.dropped = true
	}
	p.pending = nil
	p.cur = p.newBatch()
	// Waiters for dropped batches (a revoke) go on: their records are not
	// committed, so they are read again (by us or the next owner).
	p.doneSeq = p.sealedSeq
	p.mu.Unlock()
	if len(offs) > 0 {
		p.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{p.kcfg.RawTopic: offs})
		if p.rng != nil { // range mode
			p.rangeRewind(offs)
		}
	}
	p.tel.rewound()
	p.log.Info("rewound to the last stored offsets", "offsets", offs)
	p.mu.Lock()
	p.rewindReq = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// abandon stops the flusher: only a cancelled flush context ends here.
func (p *Processor) abandon(b *batch, err error) {
	p.log.Error("flush abandoned", "batch", b.seq, "err", err)
	p.mu.Lock()
	p.stopped = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// backoff sleeps the attempt's jittered exponential delay
// (RETRY bounds, internal/backoff); false when ctx ended.
func (p *Processor) backoff(ctx context.Context, attempt int) bool {
	return backoff.Policy{Min: p.cfg.RetryMin, Max: p.cfg.RetryMax}.Wait(ctx, attempt) == nil
}

// retry runs op until it succeeds, backing off between attempts; it gives
// up only when ctx ends. It is for the processor's own queries and
// produces, whose failures are the infrastructure's whatever their kind:
// they are repeated, never turned into dead letters.
func (p *Processor) retry(ctx context.Context, what string, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		}
		p.log.Warn("retrying", "what", what, "attempt", attempt+1, "err", err)
		if !p.backoff(ctx, attempt) {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
	}
}

// prepare produces the batch's dead letters and de-duplicates its rows
// (b.keep). It returns an error only when ctx ends.
func (p *Processor) prepare(ctx context.Context, b *batch) error {
	b.flushStart = time.Now()
	if len(b.dead) > 0 && p.produceDead() { // range mode may only count them

		err := p.retry(ctx, "produce dead letters", func() error {
			for _, r := range b.dead {
				r.Topic = p.kcfg.DLQTopic
			}
			return p.cl.ProduceSync(ctx, b.dead...).FirstErr()
		})
		if err != nil {
			return err
		}
		for _, r := range b.dead {
			p.log.WarnContext(ctx, "dead letter", "partition", wire.Header(r, wire.HeaderDLQPartition), "offset", wire.Header(r, wire.HeaderDLQOffset),
				"stage", wire.Header(r, wire.HeaderDLQStage), "err", wire.Header(r, wire.HeaderDLQError), "request_id", wire.Header(r, wire.HeaderRequestID))
		}
	}
	p.mu.Lock() // onLost may edit offsets
	b.parts = b.partitions()
	p.mu.Unlock()
	b.rowsIn = len(b.rows)
	lookStart := time.Now()
	snap := p.rangeSnapshot(b.rows) // range mode reports
	res, err := p.dedup(ctx, b.rows)
	if err != nil {
		return err
	}
	p.rangeReport(b, snap, res.keep)
	b.lookupDur = time.Since(lookStart)
	b.keep, b.dupID, b.dupWin = res.keep, res.dupID, res.dupWin
	p.tel.prepared(b)
	// Decided: later batches must see these IDs even before the insert
	// completes (it completes, or the rewind empties the caches).
	for i := range res.keep {
		if len(res.keep[i].DedupSubjects) == 0 {
			p.ids.add(res.keep[i].id)
		}
	}
	// Records read again whose rows an earlier INSERT stored: before their
	// offsets are committed, the derived tables must hold those rows too.
	return p.repair(ctx, res.stored)
}

// finish commits the offsets of an insertion's batches (stored now), in
// order, and records their statistics.
func (p *Processor) finish(ctx context.Context, batches []*batch, insertID uint64) {
	p.tel.stored(ctx, p, batches) // queryable now: freshness, canaries
	p.commit(ctx, batches)
	stats := make([]batchStats, 0, len(batches))
	for _, b := range batches {
		p.stats.Batches.Add(1)
		p.stats.Rows.Add(int64(b.rowsIn))
		p.stats.Inserted.Add(int64(b.inserted))
		p.stats.DupIdentity.Add(int64(b.dupID))
		p.stats.DupWindow.Add(int64(b.dupWin))
		p.stats.DeadLetters.Add(int64(len(b.dead)))
		st := batchStats{
			FlushedAt: time.Now(), Instance: p.cfg.Instance, Group: p.cfg.Group, Topic: p.kcfg.RawTopic,
			Records: uint32(b.records), RowsIn: uint32(b.rowsIn), Inserted: uint32(b.inserted),
			DupIdentity: uint32(b.dupID), DupWindow: uint32(b.dupWin), Dead: uint32(len(b.dead)),
			MinReceivedMs: b.minRecv, MaxReceivedMs: b.maxRecv, Attempts: 1,
			LookupMs: uint32(b.lookupDur.Milliseconds()), InsertMs: uint32(b.insertDur.Milliseconds()),
			FlushMs:  uint32(time.Since(b.flushStart).Milliseconds()),
			InsertID: insertID,
		}
		st.Partitions = b.parts
		for a := range b.actions {
			st.Actions = append(st.Actions, a)
		}
		sort.Strings(st.Actions)
		for _, a := range st.Actions {
			st.ActionCounts = append(st.ActionCounts, b.actions[a])
		}
		stats = append(stats, st)
		p.log.DebugContext(ctx, "flushed", "batch", b.seq, "records", b.records, "rows", b.rowsIn, "inserted", b.inserted,
			"dup_identity", b.dupID, "dup_window", b.dupWin, "dead", len(b.dead), "took", time.Since(b.flushStart))

		p.mu.Lock()
		for part, o := range b.offsets {
			if _, owned := p.from[part]; owned {
				p.from[part] = o
			}
		}
		if len(p.pending) > 0 && p.pending[0] == b {
			p.pending = p.pending[1:]
		}
		p.doneSeq = max(p.doneSeq, b.seq)
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	if p.dryRun() { // nothing was inserted
		return
	}
	if err := p.st.insertStats(ctx, stats); err != nil {
		p.log.WarnContext(ctx, "pipeline_batches rows not written (statistics only)", "err", err)
	}
}

// commit commits the offsets after the batches (in order: later ones win),
// with one request. A failure is logged, not retried forever: the records
// are then read again (by us or the partition's new owner) and the lookups
// drop what is stored.
func (p *Processor) commit(ctx context.Context, batches []*batch) {
	p.mu.Lock()
	offs := map[int32]kgo.EpochOffset{}
	for _, b := range batches {
		for k, v := range b.offsets {
			offs[k] = v
		}
	}
	p.mu.Unlock()
	if len(offs) == 0 {
		return
	}
	if p.cfg.Range != nil { // range mode: no group to commit to
		p.rangeStored(offs)
		return
	}
	for attempt := 0; attempt < 3; attempt++ {
		var cerr error
		p.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{p.kcfg.RawTopic: offs},
			func(_ *kgo.Client, _ *kmsgOffsetCommitRequest, resp *kmsgOffsetCommitResponse, err error) {
				if err != nil {
					cerr = err
					return
				}
				cerr = commitRespErr(resp)
			})
		if cerr == nil {
			return
		}
		p.log.Warn("offset commit failed", "attempt", attempt+1, "err", cerr)
		if !p.backoff(ctx, attempt) {
			return
		}
	}
}
