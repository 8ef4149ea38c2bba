package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/backoff"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// request is what the handler learned about one webhook, enough to build
// its record.
type request struct {
	receivedAt time.Time
	requestID  string
	remoteAddr string
	auth       string
	org        string // organization_id, else the one found for license_id, else ""
	env        envelope
	value      []byte // body with the secret blanked
}

// buildRecord turns a verified webhook into its raw-topic record (see
// internal/wire). Trace headers are added by the caller.
func (s *Server) buildRecord(r *request) *kgo.Record {
	sum := sha256.Sum256(r.value)
	// Every header value is a slice of one buffer: one allocation instead
	// of one per header (this runs for every webhook).
	const timeLen = len("2006-01-02T15:04:05.999999999Z")
	const licenseLen = len("9223372036854775807")
	buf := make([]byte, 0, timeLen+len(r.requestID)+len(r.remoteAddr)+2*len(sum)+
		len(r.env.Action)+len(r.org)+licenseLen+len(s.cfg.Version)+len(r.auth))
	field := func(appendValue func([]byte) []byte) []byte {
		start := len(buf)
		buf = appendValue(buf)
		return buf[start:len(buf):len(buf)]
	}
	str := func(v string) []byte { return field(func(b []byte) []byte { return append(b, v...) }) }
	headers := make([]kgo.RecordHeader, 0, 12)
	headers = append(headers,
		// Same text as wire.FormatTime, without the intermediate string.
		kgo.RecordHeader{Key: wire.HeaderReceivedAt, Value: field(func(b []byte) []byte {
			return r.receivedAt.UTC().AppendFormat(b, time.RFC3339Nano)
		})},
		kgo.RecordHeader{Key: wire.HeaderRequestID, Value: str(r.requestID)},
		kgo.RecordHeader{Key: wire.HeaderRemoteAddr, Value: str(r.remoteAddr)},
		kgo.RecordHeader{Key: wire.HeaderBodySHA256, Value: field(func(b []byte) []byte { return hex.AppendEncode(b, sum[:]) })},
		kgo.RecordHeader{Key: wire.HeaderAction, Value: str(r.env.Action)},
		kgo.RecordHeader{Key: wire.HeaderOrganization, Value: str(r.org)},
		kgo.RecordHeader{Key: wire.HeaderIngestVersion, Value: str(s.cfg.Version)},
		kgo.RecordHeader{Key: wire.HeaderAuth, Value: str(r.auth)},
	)
	if r.env.LicenseID != 0 {
		headers = append(headers, kgo.RecordHeader{Key: wire.HeaderLicense, Value: field(func(b []byte) []byte {
			return strconv.AppendInt(b, r.env.LicenseID, 10)
		})})
	}
	tenant := r.org
	if tenant == "" {
		tenant = wire.LicenseTenant(r.env.LicenseID)
	}
	return &kgo.Record{
		Topic:     s.cfg.Kafka.RawTopic,
		Key:       wire.Key(tenant, r.env.Entity),
		Value:     r.value,
		Headers:   headers,
		Timestamp: r.receivedAt,
	}
}

// headerCarrier lets the OpenTelemetry propagator write W3C trace context
// into record headers.
type headerCarrier struct{ h *[]kgo.RecordHeader }

func (c headerCarrier) Get(key string) string {
	for _, h := range *c.h {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) {
	for i, h := range *c.h {
		if h.Key == key {
			(*c.h)[i].Value = []byte(value)
			return
		}
	}
	*c.h = append(*c.h, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

func (c headerCarrier) Keys() []string {
	keys := make([]string, len(*c.h))
	for i, h := range *c.h {
		keys[i] = h.Key
	}
	return keys
}

// Spool entry format, version 1: everything the record needs to be produced
// later, exactly as it would have been produced now. The topic is not
// stored: the drain writes to the configured raw topic.
//
//	0x01 | uvarint ts-unix-nanos | uvarint len | key | uvarint len | value |
//	uvarint n-headers | n × (uvarint len | name | uvarint len | value)
const spoolFormat = 1

var errSpoolEntry = errors.New("ingest: malformed spool entry")

func encodeSpoolEntry(r *kgo.Record, extra ...kgo.RecordHeader) []byte {
	n := 1 + 10 + 10 + len(r.Key) + 10 + len(r.Value) + 10
	for _, h := range r.Headers {
		n += 20 + len(h.Key) + len(h.Value)
	}
	for _, h := range extra {
		n += 20 + len(h.Key) + len(h.Value)
	}
	b := make([]byte, 0, n)
	b = append(b, spoolFormat)
	b = binary.AppendUvarint(b, uint64(r.Timestamp.UnixNano()))
	b = appendBytes(b, r.Key)
	b = appendBytes(b, r.Value)
	b = binary.AppendUvarint(b, uint64(len(r.Headers)+len(extra)))
	for _, hs := range [][]kgo.RecordHeader{r.Headers, extra} {
		for _, h := range hs {
			b = appendBytes(b, []byte(h.Key))
			b = appendBytes(b, h.Value)
		}
	}
	return b
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func decodeSpoolEntry(b []byte) (*kgo.Record, error) {
	if len(b) == 0 || b[0] != spoolFormat {
		return nil, fmt.Errorf("%w: unknown format", errSpoolEntry)
	}
	d := decoder{b: b[1:]}
	ts := d.uvarint()
	r := &kgo.Record{Timestamp: time.Unix(0, int64(ts)).UTC()}
	r.Key = d.bytes()
	r.Value = d.bytes()
	n := d.uvarint()
	if n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: header count %d", errSpoolEntry, n)
	}
	r.Headers = make([]kgo.RecordHeader, 0, n)
	for range n {
		k := d.bytes()
		v := d.bytes()
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(k), Value: v})
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, fmt.Errorf("%w: truncated or trailing bytes", errSpoolEntry)
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errSpoolEntry
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errSpoolEntry
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

// produce hands records to Kafka and waits at most timeout for every ack.
// It does not wait for the client beyond that: a record whose request is
// already on the wire cannot be cancelled with the idempotent producer, and
// the caller must answer LiveChat in time. Such a record may still be
// written later; the caller spools it too, so it may appear twice, never
// zero times (the processor de-duplicates).
func (s *Server) produce(ctx context.Context, timeout time.Duration, recs ...*kgo.Record) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if s.cfg.beforeProduce != nil {
		if err := s.cfg.beforeProduce(ctx, recs); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
	}
	results := make(chan error, len(recs))
	for _, r := range recs {
		s.client.Produce(ctx, r, func(_ *kgo.Record, err error) { results <- err })
	}
	var first error
	for range recs {
		select {
		case err := <-results:
			if err != nil && first == nil {
				first = err
			}
		case <-ctx.Done():
			return fmt.Errorf("kafka: no ack within %s: %w", timeout, ctx.Err())
		}
	}
	if first != nil {
		return fmt.Errorf("kafka: produce: %w", first)
	}
	return nil
}

// deliverSpooled is the spool's drain target: it re-creates the records and
// produces them in spool order, returning nil once all were acked.
func (s *Server) deliverSpooled(ctx context.Context, entries [][]byte) error {
	recs := make([]*kgo.Record, 0, len(entries))
	for _, e := range entries {
		r, err := decodeSpoolEntry(e)
		if err != nil {
			// Passed the CRC yet does not decode: a bug, not a lost
			// webhook. Keep the bytes in the dead-letter topic.
			s.log.Error("spool entry does not decode; sent to dead-letter topic", "error", err)
			r = &kgo.Record{Topic: s.cfg.Kafka.DLQTopic, Value: e, Headers: []kgo.RecordHeader{
				{Key: wire.HeaderDLQError, Value: []byte(err.Error())},
				{Key: wire.HeaderDLQStage, Value: []byte("ingest-spool")},
				{Key: wire.HeaderDLQAt, Value: []byte(wire.FormatTime(time.Now()))},
			}}
		} else {
			r.Topic = s.cfg.Kafka.RawTopic
		}
		recs = append(recs, r)
	}
	ctx, span := s.tel.drainSpan(ctx, recs) // telemetry.go
	defer span.End()
	err := s.produce(ctx, s.cfg.DrainTimeout, recs...)
	if err != nil {
		span.RecordError(err)
	}
	if err != nil && isPermanent(err) {
		// Some record of the batch is one Kafka will never take (too
		// large for the topic, say). Retrying the batch would block the
		// spool forever: go one by one and set the refused ones aside.
		err = s.deliverEach(ctx, entries)
	}
	if err != nil {
		s.counters.drainErrors.Add(1)
		return err
	}
	s.counters.drained.Add(int64(len(recs)))
	for _, r := range recs {
		if r.Topic == s.cfg.Kafka.RawTopic {
			s.order.addSpooled(string(r.Key), -1)
		}
	}
	return nil
}

// isPermanent reports produce errors that no retry can fix: the broker
// refuses the record itself (MESSAGE_TOO_LARGE, INVALID_TIMESTAMP,
// CORRUPT_MESSAGE, INVALID_RECORD, POLICY_VIOLATION: backoff.Refused, the
// project's one classification). Everything else (timeouts, unreachable
// or restarting brokers, leadership changes) is transient.
func isPermanent(err error) bool { return backoff.Refused(err) }

// deliverEach produces entries one at a time (fresh records: the batch's
// may still be referenced by the client) and quarantines those refused
// for good.
func (s *Server) deliverEach(ctx context.Context, entries [][]byte) error {
	for _, e := range entries {
		r, err := decodeSpoolEntry(e)
		if err != nil {
			return err // cannot happen: the batch decoded a moment ago
		}
		r.Topic = s.cfg.Kafka.RawTopic
		err = s.produce(ctx, s.cfg.DrainTimeout, r)
		if err == nil {
			continue
		}
		if !isPermanent(err) {
			return err
		}
		if err := s.quarantine(ctx, e, r, err); err != nil {
			return err
		}
	}
	return nil
}

// quarantine keeps a webhook Kafka refuses for good as a file under
// DeadDir (fsynced: it was acknowledged to LiveChat, so it must not be
// lost) and announces it on the dead-letter topic with the reason and the
// original headers, without the body Kafka refused.
func (s *Server) quarantine(ctx context.Context, entry []byte, r *kgo.Record, reason error) error {
	path, err := s.quar.Put(wire.Header(r, wire.HeaderRequestID), entry)
	if err != nil {
		return err
	}
	s.counters.quarantined.Add(1)
	s.log.Error("Kafka refuses a webhook for good; kept on disk for replay", "file", path,
		"request_id", wire.Header(r, wire.HeaderRequestID), "organization_id", wire.Header(r, wire.HeaderOrganization),
		"action", wire.Header(r, wire.HeaderAction), "value_bytes", len(r.Value), "error", reason)
	headers := append(append([]kgo.RecordHeader(nil), r.Headers...),
		kgo.RecordHeader{Key: wire.HeaderDLQError, Value: []byte(fmt.Sprintf("kafka refused the record (%v); body kept by ingest in %s", reason, path))},
		kgo.RecordHeader{Key: wire.HeaderDLQStage, Value: []byte("ingest")},
		kgo.RecordHeader{Key: wire.HeaderDLQTopic, Value: []byte(s.cfg.Kafka.RawTopic)},
		kgo.RecordHeader{Key: wire.HeaderDLQAt, Value: []byte(wire.FormatTime(time.Now()))},
	)
	dl := &kgo.Record{Topic: s.cfg.Kafka.DLQTopic, Key: r.Key, Headers: headers, Timestamp: r.Timestamp}
	if err := s.produce(ctx, s.cfg.DrainTimeout, dl); err != nil {
		s.log.Warn("dead-letter notice not written (the file is the copy)", "file", path, "error", err)
	}
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
