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
//  4. batch (add, seal): rows accumulate until BATCH_ROWS, BATCH_BYTES or
//     BATCH_LINGER. At most MaxPendingBatches sealed batches wait for the
//     flusher; beyond that fetching pauses (PauseFetchTopics), so memory
//     stays bounded however large the backlog and however long ClickHouse
//     is away.
//  5. flush (flusher), batch by batch in order: dead letters are produced
//     and duplicates dropped (prepare, dedup); the rest is inserted with ONE
//     insert into events (insertBatch); offsets are committed and a
//     pipeline_batches row written (finish). The next batch's prepare
//     overlaps the running insert; commits stay in batch order.
//
// Exactly-once effect: a batch is one insert block, so it is stored whole
// or not at all (per table partition); before inserting, IDs already stored
// are dropped (memory cache, then a ClickHouse lookup of the batch's IDs);
// after an insert error, stored IDs are checked again before the retry,
// because an insert that reported an error may have been written. Offsets
// are committed only after that, so a crash at any point either redoes a
// batch (whose stored rows the lookup drops) or nothing. On a rebalance
// (OnPartitionsRevoked) everything read is flushed and committed before the
// partitions go. ReplacingMergeTree on (organization_id, event_id) is the
// last safety net.
//
// Infrastructure failures (ClickHouse down, Kafka away) are retried forever
// with jittered exponential backoff and never reach the dead-letter topic;
// only records that cannot be decoded or validated go there.
package processor

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

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
	ids    *idCache
	window *windowCache

	cl *kgo.Client

	mu        sync.Mutex
	cond      *sync.Cond
	cur       *batch
	pending   []*batch // sealed, oldest first; pending[0] is being flushed
	sealedSeq uint64
	doneSeq   uint64
	stopped   bool // flusher gave up (shutdown timeout)
	popped    int  // batches committed since the preparer last looked
	paused    bool

	stats Stats
}

// Stats are running totals since start.
type Stats struct {
	Records, Rows, Inserted, DupIdentity, DupWindow, DeadLetters atomic.Int64
	Batches, InsertRetries, Pauses                               atomic.Int64
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
		cfg:    cfg,
		kcfg:   o.Kafka,
		st:     &store{conn: o.ClickHouse, db: o.Database},
		dir:    o.Directory,
		log:    log,
		users:  NewUserCache(cfg.UserCacheSize),
		ids:    newIDCache(cfg.IDCacheSize),
		window: newWindowCache(cfg.WindowCacheSize),
	}
	p.cond = sync.NewCond(&p.mu)
	p.cur = p.newBatch()
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

	// set by the flusher
	parts         []int32
	keep          []Row
	rowsIn        int
	dupID, dupWin int
	attempts      int
	flushStart    time.Time
	lookupDur     time.Duration
	insertDur     time.Duration
	done          chan error
}

func (p *Processor) newBatch() *batch {
	// Rows are allocated once at the batch's expected size: growing a slice
	// of ~1 KiB structs by doubling would waste up to half of it.
	// A row averages ~2 KiB with its strings (rowOverhead is the struct
	// and short strings only).
	n := min(p.cfg.BatchRows, int(p.cfg.BatchBytes/(rowOverhead+900))+1)
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

func nonce() string {
	var b [8]byte
	for i := range b {
		b[i] = byte(rand.N(256))
	}
	return hex.EncodeToString(b[:])
}

func (b *batch) full(cfg Config) bool {
	return len(b.rows) >= cfg.BatchRows || b.bytes >= cfg.BatchBytes
}

// Run consumes until ctx is cancelled, then flushes what it read, commits
// and leaves the group (bounded by ShutdownTimeout). It returns nil on a
// clean shutdown.
func (p *Processor) Run(ctx context.Context) error {
	cl, err := kafka.NewClient(p.kcfg,
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
		kgo.FetchMaxPartitionBytes(p.cfg.FetchMaxBytes/4),
		kgo.MaxConcurrentFetches(2),
		kgo.SessionTimeout(p.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, p.cfg.SessionTimeout/6)),
	)
	if err != nil {
		return err
	}
	p.cl = cl
	ensureCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = kafka.EnsureTopics(ensureCtx, cl, p.kcfg, p.log, p.kcfg.RawTopic, p.kcfg.DLQTopic)
	cancel()
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

	p.pollLoop(ctx)

	// Shutdown: flush everything read, then leave the group.
	timer := time.AfterFunc(p.cfg.ShutdownTimeout, hardStop)
	defer timer.Stop()
	p.mu.Lock()
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
		return errors.New("processor: shutdown timeout: the last batch was not stored (its offsets are not committed; it will be read again)")
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
				if len(p.pending) == 0 {
					p.seal()
				}
				wait = min(p.cfg.BatchLinger, 50*time.Millisecond)
			}
		}
		p.mu.Unlock()
		pollCtx, cancel := context.WithTimeout(ctx, wait)
		fetches := p.cl.PollRecords(pollCtx, 5000)
		cancel()
		fetches.EachError(func(topic string, part int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			p.log.Warn("fetch error", "topic", topic, "partition", part, "err", err)
		})
		recs := fetches.Records()
		if len(recs) > 0 {
			p.process(recs)
		}
		p.cl.AllowRebalance()
	}
}

// waitForRoom blocks while MaxPendingBatches sealed batches wait for the
// flusher, with fetching paused meanwhile.
func (p *Processor) waitForRoom(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) < p.cfg.MaxPendingBatches {
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
	for len(p.pending) >= p.cfg.MaxPendingBatches && ctx.Err() == nil && !p.stopped {
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

// waitFlushed waits until batch seq is flushed; false if the flusher stopped first.
func (p *Processor) waitFlushed(seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.doneSeq < seq && !p.stopped {
		p.cond.Wait()
	}
	return p.doneSeq >= seq
}

// onAssigned waits (bounded) until no insert from these partitions is
// still running on the server: a previous owner killed right after sending
// a batch leaves that insert to complete without it, and our lookups must
// see its rows. Polls wait for this callback.
func (p *Processor) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	parts := assigned[p.kcfg.RawTopic]
	if len(parts) == 0 {
		return
	}
	deadline := time.Now().Add(zombieInsertWait)
	for {
		running, err := p.st.runningInserts(ctx, p.kcfg.RawTopic)
		busy := false
		for _, part := range parts {
			busy = busy || running[part]
		}
		if err == nil && !busy {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.log.Warn("inserts of newly assigned partitions still running (or unknown); continuing", "partitions", parts, "err", err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// zombieInsertWait bounds onAssigned's wait.
const zombieInsertWait = time.Minute

// onRevoked flushes and commits everything read before partitions go.
func (p *Processor) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	p.mu.Lock()
	p.seal()
	last := p.sealedSeq
	p.mu.Unlock()
	p.log.Info("partitions revoked: flushing before handing them over", "partitions", revoked[p.kcfg.RawTopic])
	p.waitFlushed(last)
}

// onLost forgets the offsets of partitions lost without a revoke (session
// expired): committing them could rewind the new owner. Their rows are
// still inserted; the new owner's lookups drop them when it reads them again.
func (p *Processor) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	parts := lost[p.kcfg.RawTopic]
	for _, b := range append(p.pending, p.cur) {
		for _, part := range parts {
			delete(b.offsets, part)
		}
	}
	p.log.Warn("partitions lost", "partitions", parts)
}

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
			out[i].w, out[i].err = decodeRecord(r)
		}
		return out
	}
	var wg sync.WaitGroup
	chunk := (len(recs) + workers - 1) / workers
	for start := 0; start < len(recs); start += chunk {
		end := min(start+chunk, len(recs))
		wg.Go(func() {
			for i := start; i < end; i++ {
				out[i].w, out[i].err = decodeRecord(recs[i])
			}
		})
	}
	wg.Wait()
	return out
}

// ValidationError is a decoded webhook that lacks what its identity needs.
type ValidationError struct{ Reason string }

func (e *ValidationError) Error() string { return "invalid webhook: " + e.Reason }

func decodeRecord(r *kgo.Record) (*livechat.Webhook, error) {
	w, err := livechat.Decode(r.Value)
	if err != nil {
		return nil, err
	}
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
		b := p.cur
		if b.records == 0 {
			b.started = time.Now()
		}
		b.records++
		b.offsets[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
		if err := dec[i].err; err != nil {
			b.dead = append(b.dead, deadLetter(r, err))
			b.bytes += int64(len(r.Value)) + 256
		} else {
			src := sourceOf(r)
			rows := Transform(src, dec[i].w, p.users, p.dir)
			for j := range rows {
				b.bytes += rows[j].size()
			}
			b.rows = append(b.rows, rows...)
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
	switch {
	case errors.As(err, &de):
		stage = "decode-" + de.Stage
	case errors.As(err, &ve):
		stage = "validate"
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

// flusher flushes sealed batches in order until stopped. Preparing a
// batch (dead letters, de-duplication) is sequential, because each batch's
// decisions build on the previous ones (kept IDs and window times enter
// the memory caches as soon as they are decided). Up to InsertParallelism
// inserts then run at once (ClickHouse works on each insert mostly on one
// core), and commits happen strictly in batch order, each after every
// earlier batch is stored: offsets never pass a batch that is not in
// ClickHouse.
func (p *Processor) flusher(ctx context.Context) {
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	sem := make(chan struct{}, p.cfg.InsertParallelism)
	inserted := make(chan *batch, 64)
	var wg sync.WaitGroup
	wg.Go(func() { p.committer(ctx, inserted, abort) })
	defer wg.Wait()
	defer close(inserted)
	next := 0 // index in pending of the next batch to prepare
	for {
		p.mu.Lock()
		for {
			next -= p.popped // the committer popped batches: indexes shift
			p.popped = 0
			if next < len(p.pending) || p.stopped {
				break
			}
			p.cond.Wait()
		}
		if next >= len(p.pending) {
			p.mu.Unlock()
			return
		}
		b := p.pending[next]
		next++
		p.mu.Unlock()

		if err := p.prepare(ctx, b); err != nil {
			p.abandon(b, err)
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			p.abandon(b, ctx.Err())
			return
		}
		b.done = make(chan error, 1)
		go func() {
			b.done <- p.insertBatch(ctx, b)
			<-sem
		}()
		inserted <- b
	}
}

// committer commits inserted batches in order.
func (p *Processor) committer(ctx context.Context, inserted <-chan *batch, abort func()) {
	for b := range inserted {
		if err := <-b.done; err != nil {
			p.abandon(b, err)
			abort()
			for range inserted {
			}
			return
		}
		p.finish(ctx, b)
		p.mu.Lock()
		p.pending = p.pending[1:]
		p.popped++
		p.doneSeq = b.seq
		p.cond.Broadcast()
		p.mu.Unlock()
	}
}

// abandon stops the flusher: only a cancelled flush context ends here.
func (p *Processor) abandon(b *batch, err error) {
	p.log.Error("flush abandoned", "batch", b.seq, "err", err)
	p.mu.Lock()
	p.stopped = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// backoff sleeps the attempt's jittered exponential delay; false when ctx ended.
func (p *Processor) backoff(ctx context.Context, attempt int) bool {
	d := p.cfg.RetryMin << min(attempt, 20)
	if d > p.cfg.RetryMax || d <= 0 {
		d = p.cfg.RetryMax
	}
	d = d/2 + rand.N(d/2+1) // full jitter over the upper half
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retry runs op until it succeeds, backing off between attempts; it gives
// up only when ctx ends.
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
	if len(b.dead) > 0 {
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
			p.log.Warn("dead letter", "partition", wire.Header(r, wire.HeaderDLQPartition), "offset", wire.Header(r, wire.HeaderDLQOffset),
				"stage", wire.Header(r, wire.HeaderDLQStage), "err", wire.Header(r, wire.HeaderDLQError))
		}
	}
	p.mu.Lock() // onLost may edit offsets
	b.parts = b.partitions()
	p.mu.Unlock()
	b.rowsIn = len(b.rows)
	lookStart := time.Now()
	keep, dupID, dupWin, err := p.dedup(ctx, b.rows)
	if err != nil {
		return err
	}
	b.lookupDur = time.Since(lookStart)
	b.keep, b.dupID, b.dupWin = keep, dupID, dupWin
	// Decided: later batches must see these IDs even before the insert
	// completes (it is retried until it does, or the process ends).
	for i := range keep {
		if keep[i].DedupKey == "" {
			p.ids.add(keep[i].id)
		}
	}
	return nil
}

// insertBatch writes b.keep with one insert, retrying forever; after an
// error it drops the rows that are stored by then before trying again.
// It returns an error only when ctx ends.
func (p *Processor) insertBatch(ctx context.Context, b *batch) error {
	insStart := time.Now()
	keep := b.keep
	for len(keep) > 0 {
		b.attempts++
		err := p.st.insert(ctx, keep, insertQueryID(p.st.db, p.kcfg.RawTopic, b.parts, nonce()))
		if err == nil {
			break
		}
		p.stats.InsertRetries.Add(1)
		p.log.Warn("insert failed; re-checking stored ids before retrying", "rows", len(keep), "attempt", b.attempts, "err", err)
		if !p.backoff(ctx, b.attempts-1) {
			return fmt.Errorf("insert: %w", ctx.Err())
		}
		// The failed insert may have been written (wholly or, across table
		// partitions, in part): drop what is stored now.
		var stored map[string]struct{}
		if err := p.retry(ctx, "re-check stored ids", func() error {
			var e error
			look := make([]*Row, len(keep))
			for i := range keep {
				look[i] = &keep[i]
			}
			stored, e = p.st.storedIDs(ctx, look)
			return e
		}); err != nil {
			return err
		}
		if len(stored) > 0 {
			rest := keep[:0:0]
			for _, r := range keep {
				if _, ok := stored[r.EventID]; !ok {
					rest = append(rest, r)
				}
			}
			p.log.Info("rows of the failed insert were stored; retrying the rest", "stored", len(stored), "rest", len(rest))
			keep = rest
		}
	}
	b.insertDur = time.Since(insStart)
	return nil
}

// finish commits the batch's offsets and records its statistics.
func (p *Processor) finish(ctx context.Context, b *batch) {
	p.commit(ctx, b)
	inserted := len(b.keep)
	p.stats.Batches.Add(1)
	p.stats.Rows.Add(int64(b.rowsIn))
	p.stats.Inserted.Add(int64(inserted))
	p.stats.DupIdentity.Add(int64(b.dupID))
	p.stats.DupWindow.Add(int64(b.dupWin))
	p.stats.DeadLetters.Add(int64(len(b.dead)))

	st := batchStats{
		FlushedAt: time.Now(), Instance: p.cfg.Instance, Group: p.cfg.Group, Topic: p.kcfg.RawTopic,
		Records: uint32(b.records), RowsIn: uint32(b.rowsIn), Inserted: uint32(inserted),
		DupIdentity: uint32(b.dupID), DupWindow: uint32(b.dupWin), Dead: uint32(len(b.dead)),
		MinReceivedMs: b.minRecv, MaxReceivedMs: b.maxRecv, Attempts: uint32(b.attempts),
		LookupMs: uint32(b.lookupDur.Milliseconds()), InsertMs: uint32(b.insertDur.Milliseconds()),
		FlushMs: uint32(time.Since(b.flushStart).Milliseconds()),
	}
	st.Partitions = b.parts
	for a := range b.actions {
		st.Actions = append(st.Actions, a)
	}
	sort.Strings(st.Actions)
	for _, a := range st.Actions {
		st.ActionCounts = append(st.ActionCounts, b.actions[a])
	}
	if err := p.st.insertStats(ctx, st); err != nil {
		p.log.Warn("pipeline_batches row not written (statistics only)", "err", err)
	}
	p.log.Debug("flushed", "batch", b.seq, "records", b.records, "rows", b.rowsIn, "inserted", inserted,
		"dup_identity", b.dupID, "dup_window", b.dupWin, "dead", len(b.dead), "took", time.Since(b.flushStart))
	// The rows are stored: let the memory go before the batch leaves pending.
	b.rows, b.keep = nil, nil
}

// commit commits the batch's offsets. A failure is logged, not retried
// forever: the records are then read again (by us or the partition's new
// owner) and the lookups drop what is stored.
func (p *Processor) commit(ctx context.Context, b *batch) {
	p.mu.Lock()
	offs := make(map[int32]kgo.EpochOffset, len(b.offsets))
	for k, v := range b.offsets {
		offs[k] = v
	}
	p.mu.Unlock()
	if len(offs) == 0 {
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
