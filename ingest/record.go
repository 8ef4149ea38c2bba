package ingest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/wire"
)

// request is what the handler learned about one webhook, enough to build
// its record.
type request struct {
	receivedAt time.Time
	requestID  string
	remoteAddr net.Addr
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
	const addrLen = len("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%zone]:65535")
	buf := make([]byte, 0, timeLen+len(r.requestID)+addrLen+2*len(sum)+
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
		kgo.RecordHeader{Key: wire.HeaderRemoteAddr, Value: field(func(b []byte) []byte { return appendAddr(b, r.remoteAddr) })},
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

// appendAddr appends a's text (host:port) to b; a TCP address without the
// intermediate string that String allocates.
func appendAddr(b []byte, a net.Addr) []byte {
	if t, ok := a.(*net.TCPAddr); ok && t.Zone == "" {
		// Unmap: String prints an IPv4 address held in 16 bytes as IPv4.
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).AppendTo(b)
	}
	if a == nil {
		return b
	}
	return append(b, a.String()...)
}
