// Package replay reads a range of the raw topic again and inserts what is
// missing (`lcpipe replay`): to backfill after an outage or a bug, or to
// rebuild the tables in another database after a schema change and compare
// before switching.
//
// It is not a second pipeline: it runs processor.Processor in range mode
// (processor.Range) — the same decode, transform, identity and
// de-duplication code and the same INSERT path — with its own consumer
// reading the partitions directly from the start to the end offsets, so the
// live consumer group keeps running undisturbed. What is stored already is
// dropped by the processor's lookups, so a replay into the live database
// inserts nothing that is there, and a replay can always be redone safely.
//
// Progress is kept in a state file per (topic, database, --from, --to)
// after every completed INSERT (what the group commit is for the live
// processor): a replay interrupted, even by kill -9, and started again with
// the same arguments resumes there with the range it resolved the first
// time, and ends in the same state as an uninterrupted one.
package replay

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/progress"
	"github.com/lcpipe/lcpipe/ops"
	"github.com/lcpipe/lcpipe/processor"
)

// Options of one replay.
type Options struct {
	Kafka kafka.Config
	// ClickHouse is connected to the server holding Database.
	ClickHouse driver.Conn
	// Database receives the rows (migrated). LiveDatabase and Group are the
	// live processors': when Database is the live one, the range is cut at
	// the group's committed offsets (records the live processor has not
	// processed yet are its to insert; two writers of one record could
	// both insert it).
	Database, LiveDatabase, Group string
	// From and To bound the range: "earliest", "latest", a time
	// (ops.ParseTime: resolved with Kafka's offsets-by-time), or
	// "P:O,P:O,..." per partition. Defaults earliest and latest (the log
	// end when the replay first starts).
	From, To string
	DryRun   bool
	// Rate caps records per second (0: none).
	Rate float64
	// StateDir keeps the progress files. Required unless DryRun.
	StateDir string
	// Processor is the base configuration (batch sizes, DEDUP_WINDOW:
	// use the live processors' so decisions match).
	Processor processor.Config
	// DeadLetters produces undecodable records to the dead-letter topic
	// (default: only counted; the live processor dead-lettered them).
	DeadLetters bool
	// Log receives progress. Default: discard.
	Log *slog.Logger
	// Progress draws a bar (stderr) when not nil.
	Progress io.Writer
}

// withDefaults fills the zero fields with the defaults documented on
// Options.
func (o Options) withDefaults() Options {
	o.From = cmp.Or(o.From, "earliest")
	o.To = cmp.Or(o.To, "latest")
	o.Log = cmp.Or(o.Log, slog.New(slog.DiscardHandler))
	return o
}

// Counts are one action's (or the total's) figures. Records and
// DeadLetters count raw records; the others count events (rows): an
// incoming_chat is one record and several events.
type Counts struct {
	Records       int `json:"records_read"`
	AlreadyStored int `json:"already_stored"`
	Duplicates    int `json:"duplicates"`
	Inserted      int `json:"inserted"` // would insert, in a dry run
	DeadLetters   int `json:"dead_letters"`
}

func (c *Counts) add(o Counts) {
	c.Records += o.Records
	c.AlreadyStored += o.AlreadyStored
	c.Duplicates += o.Duplicates
	c.Inserted += o.Inserted
	c.DeadLetters += o.DeadLetters
}

// Report is what a replay did (or would do).
type Report struct {
	Topic    string             `json:"topic"`
	Database string             `json:"database"`
	DryRun   bool               `json:"dry_run"`
	Start    ops.Offsets        `json:"start"`
	End      ops.Offsets        `json:"end"`
	Resumed  ops.Offsets        `json:"resumed_from,omitempty"`
	Notes    []string           `json:"notes"`
	Actions  map[string]*Counts `json:"actions"`
	Total    Counts             `json:"total"`
	Took     string             `json:"took"`
}

// state is the progress file.
type state struct {
	Topic    string      `json:"topic"`
	Database string      `json:"database"`
	From     string      `json:"from"`
	To       string      `json:"to"`
	Start    ops.Offsets `json:"start"`
	End      ops.Offsets `json:"end"`
	// Next is the next offset to read per partition (after the last
	// completed INSERT).
	Next    ops.Offsets `json:"next"`
	Updated time.Time   `json:"updated"`
}

// Run replays the range and returns the report. An interrupted replay
// (ctx cancelled) returns ctx's error after what was read is stored and the
// progress saved.
func Run(ctx context.Context, o Options) (*Report, error) {
	began := time.Now()
	o = o.withDefaults()
	if !o.DryRun && o.StateDir == "" {
		return nil, errors.New("replay: no state directory")
	}
	cl, err := kafka.NewClient(o.Kafka)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := o.Kafka.RawTopic
	rep := &Report{Topic: topic, Database: o.Database, DryRun: o.DryRun, Actions: map[string]*Counts{}, Notes: []string{}}

	statePath := filepath.Join(o.StateDir, stateName(topic, o.Database, o.From, o.To))
	var st *state
	if !o.DryRun {
		if st, err = loadState(statePath); err != nil {
			return nil, err
		}
	}
	if st == nil {
		start, end, notes, err := resolve(ctx, adm, o)
		if err != nil {
			return nil, err
		}
		rep.Notes = append(rep.Notes, notes...)
		st = &state{Topic: topic, Database: o.Database, From: o.From, To: o.To, Start: start, End: end, Next: ops.Offsets{}}
		for p, s := range start {
			st.Next[p] = s
		}
	} else {
		rep.Resumed = st.Next
		rep.Notes = append(rep.Notes, fmt.Sprintf("resumed from %s (saved %s)", statePath, st.Updated.Format(time.RFC3339)))
	}
	rep.Start, rep.End = st.Start, st.End

	var total int64
	for p, e := range st.End {
		total += max(e-st.Next[p], 0)
	}
	var bar *progress.Bar
	if o.Progress != nil {
		bar = progress.New(o.Progress, total, "replay")
	}
	defer bar.Finish()

	var mu sync.Mutex // OnBatch and OnStored run on the processor's goroutines
	var batchErr error
	cfg := o.Processor
	cfg.Group = "lcpipe-replay" // names this run in pipeline_batches only
	cfg.ShutdownTimeout = time.Hour
	from := ops.Offsets{}
	for p, n := range st.Next {
		from[p] = n
	}
	cfg.Range = &processor.Range{
		Start: from, End: st.End, DryRun: o.DryRun, Rate: o.Rate, DeadLetters: o.DeadLetters,
		OnBatch: func(b processor.BatchReport) {
			counts, err := classify(ctx, o.ClickHouse, o.Database, topic, b)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && batchErr == nil {
				batchErr = err
			}
			n := 0
			for a, c := range counts {
				if rep.Actions[a] == nil {
					rep.Actions[a] = &Counts{}
				}
				rep.Actions[a].add(*c)
				rep.Total.add(*c)
				n += c.Records
			}
			bar.Add(n)
		},
		OnStored: func(next map[int32]int64) {
			if o.DryRun {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for p, n := range next {
				st.Next[p] = max(st.Next[p], n)
			}
			st.Updated = time.Now().UTC()
			if err := saveState(statePath, st); err != nil && batchErr == nil {
				batchErr = err
			}
		},
	}
	p, err := processor.New(processor.Options{Config: cfg, Kafka: o.Kafka, ClickHouse: o.ClickHouse, Database: o.Database, Log: o.Log})
	if err != nil {
		return nil, err
	}
	runErr := p.Run(ctx)
	rep.Took = time.Since(began).Round(time.Millisecond).String()
	mu.Lock()
	defer mu.Unlock()
	switch {
	case runErr != nil:
		return rep, fmt.Errorf("replay: %w (progress saved in %s: run the same command again to resume)", runErr, statePath)
	case ctx.Err() != nil:
		return rep, fmt.Errorf("replay interrupted (progress saved in %s: run the same command again to resume): %w", statePath, ctx.Err())
	case batchErr != nil:
		return rep, fmt.Errorf("replay: %w", batchErr)
	}
	if !o.DryRun {
		for p, e := range st.End {
			if st.Next[p] < e {
				return rep, fmt.Errorf("replay: partition %d stopped at %d before its end %d (run again to resume)", p, st.Next[p], e)
			}
		}
		// Done: a later run with the same arguments starts afresh (and
		// inserts nothing that is stored).
		if err := os.Remove(statePath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return rep, fmt.Errorf("replay: remove state: %w", err)
		}
	}
	return rep, nil
}

// resolve turns From and To into offsets, clipped to the log and, for the
// live database, to the group's committed offsets.
func resolve(ctx context.Context, adm *kadm.Client, o Options) (start, end ops.Offsets, notes []string, err error) {
	topic := o.Kafka.RawTopic
	logStart, err := ops.StartOffsets(ctx, adm, topic)
	if err != nil {
		return nil, nil, nil, err
	}
	logEnd, err := ops.EndOffsets(ctx, adm, topic)
	if err != nil {
		return nil, nil, nil, err
	}
	start, err = ops.Bound(ctx, adm, topic, o.From, logStart, logEnd, logStart)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--from: %w", err)
	}
	end, err = ops.Bound(ctx, adm, topic, o.To, logStart, logEnd, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--to: %w", err)
	}
	for p := range end {
		if _, ok := logEnd[p]; !ok {
			return nil, nil, nil, fmt.Errorf("partition %d is not in %s", p, topic)
		}
		end[p] = min(max(end[p], logStart[p]), logEnd[p])
		start[p] = min(max(start[p], logStart[p]), end[p])
	}
	if o.Database == o.LiveDatabase && o.Group != "" {
		committed, err := ops.Committed(ctx, adm, o.Group, topic)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, p := range end.Partitions() {
			if c := committed[p]; c < end[p] {
				notes = append(notes, fmt.Sprintf("partition %d: end %d cut to %d, the live group's committed offset (the live processor inserts the rest)", p, end[p], c))
				end[p] = max(c, 0)
				start[p] = min(start[p], end[p])
			}
		}
	}
	return start, end, notes, nil
}

// classify turns a batch report into per-action counts: a dropped event is
// "already stored" when this very record's event is in the database (same
// event ID from the same topic, partition, offset and index), else a
// duplicate (a retry of, or identical to, an event stored or kept from
// another record).
func classify(ctx context.Context, conn driver.Conn, db, topic string, b processor.BatchReport) (map[string]*Counts, error) {
	out := map[string]*Counts{}
	get := func(a string) *Counts {
		if out[a] == nil {
			out[a] = &Counts{}
		}
		return out[a]
	}
	for a, n := range b.Records {
		get(a).Records += n
	}
	for a, n := range b.DeadLetters {
		get(a).DeadLetters += n
	}
	for a, n := range b.Kept {
		get(a).Inserted += n
	}
	if len(b.Dropped) == 0 {
		return out, nil
	}
	type src struct {
		p   int32
		o   int64
		idx uint16
	}
	stored := map[string][]src{}
	tbl, err := ext.NewTable("_ids", ext.Column("id", "String"))
	if err != nil {
		return nil, err
	}
	for _, r := range b.Dropped {
		if err := tbl.Append(r.EventID); err != nil {
			return nil, err
		}
	}
	rows, err := conn.Query(ch.Context(ctx, ch.WithExternalTable(tbl)),
		"SELECT event_id, src_partition, src_offset, src_index FROM "+db+".events WHERE event_id IN _ids AND src_topic = ?", topic)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: classify dropped events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var s src
		if err := rows.Scan(&id, &s.p, &s.o, &s.idx); err != nil {
			return nil, err
		}
		stored[id] = append(stored[id], s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, r := range b.Dropped {
		c := get(r.Action)
		same := false
		for _, s := range stored[r.EventID] {
			same = same || (s.p == r.Partition && s.o == r.Offset && s.idx == r.Index)
		}
		if same {
			c.AlreadyStored++
		} else {
			c.Duplicates++
		}
	}
	return out, nil
}

func stateName(topic, db, from, to string) string {
	h := sha256.Sum256([]byte(strings.Join([]string{topic, db, from, to}, "\x1f")))
	return "replay-" + db + "-" + hex.EncodeToString(h[:8]) + ".json"
}

func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replay: read state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("replay: state %s is damaged (delete it to start over): %w", path, err)
	}
	if st.Next == nil {
		st.Next = ops.Offsets{}
	}
	return &st, nil
}

// saveState writes the state atomically (temporary file, fsync, rename).
func saveState(path string, st *state) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("replay: state dir: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("replay: save state: %w", err)
	}
	if _, err := f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("replay: save state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replay: save state: %w", err)
	}
	return nil
}

// SortedActions lists the report's actions by name.
func (r *Report) SortedActions() []string {
	out := make([]string, 0, len(r.Actions))
	for a := range r.Actions {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}
