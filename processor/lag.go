package processor

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/lcpipe/lcpipe/internal/kafka"
)

// Consumer lag, from Kafka (not from our tables): every LagInterval the
// processor asks the broker for each raw-topic partition's log end offset
// and the group's committed offset, and reads the first record not
// committed yet for its age. The figures are the group's, whichever member
// owns a partition, so they keep moving when this processor cannot commit
// (ClickHouse away, an INSERT failing) and every processor reports the
// same (take the max per partition across instances). They are served as
// gauges (lcpipe_processor_lag_records, lcpipe_processor_lag_seconds) and
// written to pipeline_lag for the built-in dashboards, which read only
// ClickHouse.

// partLag is one partition's lag.
type partLag struct {
	partition      int32
	end, committed int64 // committed is -1 when the group has none
	records        int64
	seconds        float64
}

// lagSnapshot is the last sample, read by the gauges.
type lagSnapshot struct {
	mu    sync.Mutex
	at    time.Time
	parts []partLag
	attrs map[int32]metric.ObserveOption
}

func (l *lagSnapshot) set(at time.Time, parts []partLag) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at, l.parts = at, parts
	if l.attrs == nil {
		l.attrs = map[int32]metric.ObserveOption{}
	}
	for _, p := range parts {
		if _, ok := l.attrs[p.partition]; !ok {
			l.attrs[p.partition] = metric.WithAttributeSet(attribute.NewSet(attribute.Int("partition", int(p.partition))))
		}
	}
}

func (l *lagSnapshot) observe(o metric.Observer, records metric.Int64ObservableGauge, seconds, age metric.Float64ObservableGauge) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at.IsZero() {
		return
	}
	for _, p := range l.parts {
		o.ObserveInt64(records, p.records, l.attrs[p.partition])
		o.ObserveFloat64(seconds, p.seconds, l.attrs[p.partition])
	}
	o.ObserveFloat64(age, time.Since(l.at).Seconds())
}

// Lag returns the last lag sample per partition (records, seconds) and
// when it was taken; zero time before the first.
func (p *Processor) Lag() (at time.Time, records map[int32]int64, seconds map[int32]float64) {
	l := &p.tel.lag
	l.mu.Lock()
	defer l.mu.Unlock()
	records, seconds = map[int32]int64{}, map[int32]float64{}
	for _, pl := range l.parts {
		records[pl.partition], seconds[pl.partition] = pl.records, pl.seconds
	}
	return l.at, records, seconds
}

// startLag samples the lag every LagInterval until ctx ends (live mode;
// range mode has no group). The returned function waits for it to stop.
func (p *Processor) startLag(ctx context.Context, cl *kgo.Client) (wait func()) {
	if p.cfg.Range != nil || p.cfg.LagInterval <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.lagLoop(ctx, cl)
	}()
	return func() { <-done }
}

func (p *Processor) lagLoop(ctx context.Context, cl *kgo.Client) {
	adm := kadm.NewClient(cl)
	var reader *kgo.Client // direct consumption of single records, made on first need
	defer func() {
		if reader != nil {
			reader.Close()
		}
	}()
	ages := map[int32]ageAt{}
	t := time.NewTicker(p.cfg.LagInterval)
	defer t.Stop()
	failing := false
	for {
		sctx, cancel := context.WithTimeout(ctx, max(p.cfg.LagInterval, 10*time.Second))
		if reader == nil {
			var err error
			if reader, err = kafka.NewClient(p.kcfg); err != nil {
				p.log.Warn("lag: cannot build the record reader", "err", err)
			}
		}
		at := time.Now()
		parts, err := sampleLag(sctx, adm, reader, p.kcfg.RawTopic, p.cfg.Group, ages)
		if err == nil {
			p.tel.lag.set(at, parts)
			err = p.st.insertLag(sctx, at, p.cfg.Instance, p.cfg.Group, p.kcfg.RawTopic, parts)
		}
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			p.log.Warn("lag not sampled (retried every LAG_INTERVAL)", "err", err)
			failing = true
		case err == nil && failing:
			p.log.Info("lag sampled again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ageAt caches the timestamp of the record at an offset: the first
// uncommitted record is read again only when the commit moved.
type ageAt struct {
	offset int64
	ts     time.Time
}

// sampleLag computes every partition's lag of group on topic.
func sampleLag(ctx context.Context, adm *kadm.Client, reader *kgo.Client, topic, group string, ages map[int32]ageAt) ([]partLag, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		return nil, err
	}
	if err := committed.Error(); err != nil {
		return nil, err
	}
	var out []partLag
	want := map[int32]int64{} // partition → first uncommitted offset, where there is lag
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Topic != topic {
			return
		}
		if o.Err != nil {
			lerr = o.Err
			return
		}
		pl := partLag{partition: o.Partition, end: o.Offset, committed: -1}
		from := int64(0)
		if s, ok := starts.Lookup(topic, o.Partition); ok && s.Err == nil {
			from = s.Offset
		}
		if c, ok := committed.Lookup(topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			pl.committed = c.At
			from = max(from, c.At)
		}
		pl.records = max(o.Offset-from, 0)
		if pl.records > 0 {
			want[o.Partition] = from
		}
		out = append(out, pl)
	})
	if lerr != nil && len(out) == 0 {
		return nil, lerr
	}
	sort.Slice(out, func(i, j int) bool { return out[i].partition < out[j].partition })
	// Ages: cached while the first uncommitted offset stays.
	read := map[int32]int64{}
	for part, off := range want {
		if a, ok := ages[part]; ok && a.offset == off {
			continue
		}
		read[part] = off
	}
	if len(read) > 0 && reader != nil {
		recs, err := readAt(ctx, reader, topic, read, 5*time.Second)
		for part, r := range recs {
			ages[part] = ageAt{offset: read[part], ts: r.Timestamp}
		}
		if err != nil && len(recs) == 0 {
			return nil, err
		}
	}
	now := time.Now()
	for i := range out {
		off, lagging := want[out[i].partition]
		if !lagging {
			delete(ages, out[i].partition)
			continue
		}
		if a, ok := ages[out[i].partition]; ok && a.offset == off {
			out[i].seconds = max(now.Sub(a.ts).Seconds(), 0)
		}
	}
	return out, nil
}

// readAt reads the record at offsets[p] of each partition (at most wait),
// with cl's direct consumption. A partition whose offset holds no record
// yet is absent.
func readAt(ctx context.Context, cl *kgo.Client, topic string, offsets map[int32]int64, wait time.Duration) (map[int32]*kgo.Record, error) {
	parts := map[int32]kgo.Offset{}
	list := make([]int32, 0, len(offsets))
	for p, o := range offsets {
		parts[p] = kgo.NewOffset().At(o)
		list = append(list, p)
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})
	defer cl.RemoveConsumePartitions(map[string][]int32{topic: list})
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	out := map[int32]*kgo.Record{}
	for len(out) < len(offsets) && ctx.Err() == nil {
		fs := cl.PollRecords(ctx, 100)
		for _, r := range fs.Records() {
			if _, ok := out[r.Partition]; !ok && r.Offset >= offsets[r.Partition] {
				out[r.Partition] = r
			}
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return out, ferr
		}
	}
	return out, nil
}
