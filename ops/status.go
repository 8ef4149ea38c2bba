package ops

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/ingest"
)

// StatusOptions say what Status looks at.
type StatusOptions struct {
	Group, RawTopic, DLQTopic string
	// Database holds events, pipeline_batches and rollup_days; empty skips
	// the ClickHouse part (CH nil too).
	Database string
	// Ingests are admin base URLs of ingest processes (http://host:9480).
	Ingests []string
	// Thresholds: a limit of 0 is not checked.
	MaxLag      int64         // total lag in records
	MaxLagAge   time.Duration // age of the oldest unprocessed record, any partition
	MaxSpool    int64         // bytes spooled + quarantined, any ingest
	HTTP        *http.Client  // default: 5s timeout
	ReadTimeout time.Duration // reading the oldest unprocessed records; default 5s
}

// withDefaults fills the zero fields with the defaults documented on
// StatusOptions.
func (o StatusOptions) withDefaults() StatusOptions {
	o.HTTP = cmp.Or(o.HTTP, &http.Client{Timeout: 5 * time.Second})
	o.ReadTimeout = cmp.Or(o.ReadTimeout, 5*time.Second)
	return o
}

// PartitionLag is one raw-topic partition as the group sees it.
type PartitionLag struct {
	Partition int32 `json:"partition"`
	LogStart  int64 `json:"log_start"`
	LogEnd    int64 `json:"log_end"`
	// Committed is -1 when the group never committed (it then starts at
	// the log start).
	Committed int64 `json:"committed"`
	Lag       int64 `json:"lag"`
	// OldestUnprocessed is the timestamp (ingest's received-at) of the
	// first record not committed; LagSeconds is its age. Zero without lag.
	OldestUnprocessed *time.Time `json:"oldest_unprocessed,omitempty"`
	LagSeconds        float64    `json:"lag_seconds"`
	Owner             string     `json:"owner,omitempty"`
}

// Member is one consumer of the group.
type Member struct {
	ID         string  `json:"id"`
	ClientID   string  `json:"client_id"`
	Host       string  `json:"host"`
	Partitions []int32 `json:"partitions"`
}

// IngestStatus is one ingest's answer (or the error reaching it).
type IngestStatus struct {
	URL    string         `json:"url"`
	Error  string         `json:"error,omitempty"`
	Status *ingest.Status `json:"status,omitempty"`
}

// Watermark is a settler rollup's progress: the last settled day.
type Watermark struct {
	Name      string    `json:"name"`
	Day       string    `json:"day"`
	UptoMs    uint64    `json:"upto_ms"`
	SettledAt time.Time `json:"settled_at"`
	Days      uint64    `json:"days"`
}

// Status is the report of `lcpipe status`.
type Status struct {
	At         time.Time      `json:"at"`
	Group      string         `json:"group"`
	GroupState string         `json:"group_state"`
	Members    []Member       `json:"members"`
	Topic      string         `json:"topic"`
	Partitions []PartitionLag `json:"partitions"`
	TotalLag   int64          `json:"total_lag"`
	MaxLagSecs float64        `json:"max_lag_seconds"`

	LastInsert       *time.Time `json:"last_insert,omitempty"`
	LastInsertAgeSec float64    `json:"last_insert_age_seconds"`
	EventsLastMinute uint64     `json:"events_last_minute"`

	DeadLetters struct {
		Topic    string `json:"topic"`
		Total    int64  `json:"total"`
		LastHour int64  `json:"last_hour"`
	} `json:"dead_letters"`

	Ingests    []IngestStatus `json:"ingests,omitempty"`
	Watermarks []Watermark    `json:"settler_watermarks,omitempty"`

	// Problems are the thresholds exceeded and the parts that could not be
	// read; non-empty means `lcpipe status` exits 1.
	Problems []string `json:"problems"`
}

// GetStatus gathers the status. Errors reaching Kafka fail it; ClickHouse
// and ingest errors become Problems (the rest is still worth printing).
func GetStatus(ctx context.Context, cl *kgo.Client, ch driver.Conn, o StatusOptions) (*Status, error) {
	adm := kadm.NewClient(cl)
	st := &Status{At: time.Now().UTC(), Group: o.Group, Topic: o.RawTopic, Problems: []string{}}
	st.DeadLetters.Topic = o.DLQTopic
	o = o.withDefaults()

	start, err := StartOffsets(ctx, adm, o.RawTopic)
	if err != nil {
		return nil, err
	}
	end, err := EndOffsets(ctx, adm, o.RawTopic)
	if err != nil {
		return nil, err
	}
	committed, err := Committed(ctx, adm, o.Group, o.RawTopic)
	if err != nil {
		return nil, err
	}
	owner := map[int32]string{}
	groups, err := adm.DescribeGroups(ctx, o.Group)
	if err != nil {
		return nil, fmt.Errorf("kafka: describe group %s: %w", o.Group, err)
	}
	if g, ok := groups[o.Group]; ok {
		st.GroupState = g.State
		for _, m := range g.Members {
			mem := Member{ID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Partitions: []int32{}}
			if c, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range c.Topics {
					if t.Topic == o.RawTopic {
						mem.Partitions = append(mem.Partitions, t.Partitions...)
					}
				}
			}
			sort.Slice(mem.Partitions, func(i, j int) bool { return mem.Partitions[i] < mem.Partitions[j] })
			for _, p := range mem.Partitions {
				owner[p] = m.ClientID + "@" + m.ClientHost
			}
			st.Members = append(st.Members, mem)
		}
	}

	firstUnprocessed := Offsets{}
	for _, p := range end.Partitions() {
		pl := PartitionLag{Partition: p, LogStart: start[p], LogEnd: end[p], Committed: -1, Owner: owner[p]}
		from := start[p]
		if c, ok := committed[p]; ok {
			pl.Committed = c
			from = max(c, start[p])
		}
		pl.Lag = max(end[p]-from, 0)
		if pl.Lag > 0 {
			firstUnprocessed[p] = from
		}
		st.Partitions = append(st.Partitions, pl)
		st.TotalLag += pl.Lag
	}
	recs, err := ReadAt(ctx, cl, o.RawTopic, firstUnprocessed, o.ReadTimeout)
	if err != nil {
		st.Problems = append(st.Problems, "oldest unprocessed records: "+err.Error())
	}
	for i := range st.Partitions {
		pl := &st.Partitions[i]
		if r, ok := recs[pl.Partition]; ok {
			t := r.Timestamp.UTC()
			pl.OldestUnprocessed = &t
			pl.LagSeconds = max(st.At.Sub(t).Seconds(), 0)
			st.MaxLagSecs = max(st.MaxLagSecs, pl.LagSeconds)
		}
	}

	if err := deadLetterCounts(ctx, adm, o.DLQTopic, st); err != nil {
		st.Problems = append(st.Problems, "dead letters: "+err.Error())
	}
	if ch != nil && o.Database != "" {
		if err := clickhouseStatus(ctx, ch, o, st); err != nil {
			st.Problems = append(st.Problems, "clickhouse: "+err.Error())
		}
	}
	for _, u := range o.Ingests {
		st.Ingests = append(st.Ingests, ingestStatus(ctx, o.HTTP, u))
	}

	// Thresholds.
	if o.MaxLag > 0 && st.TotalLag > o.MaxLag {
		st.Problems = append(st.Problems, fmt.Sprintf("lag %d records exceeds --max-lag %d", st.TotalLag, o.MaxLag))
	}
	if o.MaxLagAge > 0 && st.MaxLagSecs > o.MaxLagAge.Seconds() {
		st.Problems = append(st.Problems, fmt.Sprintf("oldest unprocessed record is %s old, exceeds --max-lag-age %s",
			(time.Duration(st.MaxLagSecs*float64(time.Second))).Round(time.Second), o.MaxLagAge))
	}
	for _, is := range st.Ingests {
		if is.Error != "" {
			st.Problems = append(st.Problems, fmt.Sprintf("ingest %s: %s", is.URL, is.Error))
			continue
		}
		if used := is.Status.Spool.UsedBytes; o.MaxSpool > 0 && used > o.MaxSpool {
			st.Problems = append(st.Problems, fmt.Sprintf("ingest %s: spool and quarantine hold %d bytes, exceeds --max-spool %d", is.URL, used, o.MaxSpool))
		}
	}
	return st, nil
}

func deadLetterCounts(ctx context.Context, adm *kadm.Client, topic string, st *Status) error {
	start, err := StartOffsets(ctx, adm, topic)
	if err != nil {
		return err
	}
	end, err := EndOffsets(ctx, adm, topic)
	if err != nil {
		return err
	}
	hour, err := OffsetsAfter(ctx, adm, topic, time.Now().Add(-time.Hour))
	if err != nil {
		return err
	}
	for p, e := range end {
		st.DeadLetters.Total += e - start[p]
		st.DeadLetters.LastHour += e - max(hour[p], start[p])
	}
	return nil
}

// clickhouseStatus reads the last insert and the last minute's events from
// pipeline_batches (one row per processor flush: cheap, unlike scanning
// events) and the settler's watermarks from rollup_days.
func clickhouseStatus(ctx context.Context, ch driver.Conn, o StatusOptions, st *Status) error {
	var lastMs, lastMinute uint64
	err := ch.QueryRow(ctx, "SELECT max(flushed_at_ms), sumIf(events_inserted, flushed_at_ms >= ?) FROM "+o.Database+
		".pipeline_batches WHERE src_topic = ? AND flushed_at >= toDateTime(?, 'UTC')",
		uint64(st.At.Add(-time.Minute).UnixMilli()), o.RawTopic, st.At.Add(-30*24*time.Hour).Unix()).Scan(&lastMs, &lastMinute)
	if err != nil {
		return fmt.Errorf("last insert: %w", err)
	}
	if lastMs > 0 {
		t := time.UnixMilli(int64(lastMs)).UTC()
		st.LastInsert = &t
		st.LastInsertAgeSec = max(st.At.Sub(t).Seconds(), 0)
	}
	st.EventsLastMinute = lastMinute
	rows, err := ch.Query(ctx, "SELECT name, toString(max(day)), argMax(upto_ms, day), max(settled_at), uniqExact(day) FROM "+o.Database+
		".rollup_days GROUP BY name ORDER BY name")
	if err != nil {
		return fmt.Errorf("settler watermarks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var w Watermark
		if err := rows.Scan(&w.Name, &w.Day, &w.UptoMs, &w.SettledAt, &w.Days); err != nil {
			return fmt.Errorf("settler watermarks: %w", err)
		}
		st.Watermarks = append(st.Watermarks, w)
	}
	return rows.Err()
}

func ingestStatus(ctx context.Context, hc *http.Client, base string) IngestStatus {
	out := IngestStatus{URL: base}
	u := strings.TrimRight(base, "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	if !strings.HasSuffix(u, "/status") {
		u += "/status"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	resp, err := hc.Do(req)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		out.Error = "HTTP " + resp.Status
		return out
	}
	var s ingest.Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		out.Error = "bad answer: " + err.Error()
		return out
	}
	out.Status = &s
	return out
}
