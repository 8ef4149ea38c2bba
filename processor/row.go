package processor

import (
	"fmt"
	"reflect"
	"strings"
	"time"
	"unsafe"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Row is one row of the events table: one unique LiveChat event. Field
// order follows the columns list below; unknown values are "" / 0 / nil.
type Row struct {
	EventID        string `json:"event_id"`
	OrganizationID string `json:"organization_id"`
	LicenseID      uint64 `json:"license_id,omitempty"` // v3.3 bodies' license_id, 0 when absent
	Action         string `json:"action"`
	Kind           string `json:"kind"`
	// DedupKey is set for state changes only; see identity.go.
	DedupKey string `json:"dedup_key,omitempty"`
	// DedupSubjects and DedupStates (state changes only): the subjects the
	// change applies to and the state it leaves each in.
	DedupSubjects []string `json:"dedup_subjects,omitempty"`
	DedupStates   []string `json:"dedup_states,omitempty"`
	OccurredAtMs  uint64   `json:"occurred_at_ms"`
	ReceivedAtMs  uint64   `json:"received_at_ms"`

	ChatID            string `json:"chat_id,omitempty"`
	ThreadID          string `json:"thread_id,omitempty"`
	EventRef          string `json:"event_ref,omitempty"`
	EventType         string `json:"event_type,omitempty"`
	AuthorID          string `json:"author_id,omitempty"`
	AuthorType        string `json:"author_type,omitempty"`
	Visibility        string `json:"visibility,omitempty"`
	IsWelcome         uint8  `json:"is_welcome,omitempty"`
	TextLength        uint32 `json:"text_length,omitempty"`
	SystemMessageType string `json:"system_message_type,omitempty"`
	FormType          string `json:"form_type,omitempty"`

	AgentID     string   `json:"agent_id,omitempty"`
	AgentName   string   `json:"agent_name,omitempty"`
	CustomerID  string   `json:"customer_id,omitempty"`
	GroupIDs    []uint32 `json:"group_ids,omitempty"`
	GroupNames  []string `json:"group_names,omitempty"`
	UserType    string   `json:"user_type,omitempty"`
	Reason      string   `json:"reason,omitempty"`
	RequesterID string   `json:"requester_id,omitempty"`

	Tag               string   `json:"tag,omitempty"`
	Tags              []string `json:"tags,omitempty"`
	TransferGroupIDs  []uint32 `json:"transfer_group_ids,omitempty"`
	TransferAgentIDs  []string `json:"transfer_agent_ids,omitempty"`
	QueuePosition     int32    `json:"queue_position,omitempty"`
	QueueWaitTime     int32    `json:"queue_wait_time,omitempty"`
	QueuedAtMs        uint64   `json:"queued_at_ms,omitempty"`
	RoutingStatus     string   `json:"routing_status,omitempty"`
	RatingScore       int8     `json:"rating_score,omitempty"`
	RatingHasScore    uint8    `json:"rating_has_score,omitempty"`
	RatingComment     string   `json:"rating_comment,omitempty"`
	ThreadCreatedAtMs uint64   `json:"thread_created_at_ms,omitempty"`
	ThreadActive      uint8    `json:"thread_active,omitempty"`
	Continuous        uint8    `json:"continuous,omitempty"`
	GreetingID        string   `json:"greeting_id,omitempty"`

	CustomerCountry     string `json:"customer_country,omitempty"`
	CustomerCountryCode string `json:"customer_country_code,omitempty"`
	CustomerCity        string `json:"customer_city,omitempty"`
	StartURL            string `json:"start_url,omitempty"`
	Referrer            string `json:"referrer,omitempty"`

	PostbackID      string `json:"postback_id,omitempty"`
	PostbackToggled uint8  `json:"postback_toggled,omitempty"`
	ButtonType      string `json:"button_type,omitempty"`
	ButtonValue     string `json:"button_value,omitempty"`

	Properties string `json:"properties,omitempty"`
	Payload    string `json:"payload"`

	SrcTopic      string `json:"src_topic"`
	SrcPartition  int32  `json:"src_partition"`
	SrcOffset     int64  `json:"src_offset"`
	SrcIndex      uint16 `json:"src_index"`
	RequestID     string `json:"request_id,omitempty"`
	BodySHA256    string `json:"body_sha256,omitempty"`
	IngestVersion string `json:"ingest_version,omitempty"`

	// id is EventID as bytes, the key of the in-memory caches.
	id eventID
	// ownTime: OccurredAtMs comes from the payload (every delivery of the
	// event carries the same), not from the received-at.
	ownTime bool
}

// rowOverhead is a Row's fixed memory: the struct and its short strings
// (ids, names, types). size adds the long ones, so BATCH_BYTES bounds the
// batch's memory rather than its payload bytes only.
const rowOverhead = int64(unsafe.Sizeof(Row{})) + 300

// size approximates the row's memory, for BATCH_BYTES.
func (r *Row) size() int64 {
	return int64(len(r.Payload)+len(r.Properties)) + rowOverhead
}

// The events table's columns as the processor writes them, in one list:
// the INSERT's column list, the columnar fill and the strings compact
// copies all come from it (TestEventColumnsMatchSchema checks it against
// the migrated table and the Row struct).
var eventColumns = []eventColumn{
	strCol("event_id", func(r *Row) *string { return &r.EventID }),
	strCol("organization_id", func(r *Row) *string { return &r.OrganizationID }),
	numCol("license_id", func(r *Row) uint64 { return r.LicenseID }),
	strCol("action", func(r *Row) *string { return &r.Action }),
	strCol("kind", func(r *Row) *string { return &r.Kind }),
	strCol("dedup_key", func(r *Row) *string { return &r.DedupKey }),
	timeCol("occurred_at", func(r *Row) uint64 { return r.OccurredAtMs }),
	numCol("occurred_at_ms", func(r *Row) uint64 { return r.OccurredAtMs }),
	timeCol("received_at", func(r *Row) uint64 { return r.ReceivedAtMs }),
	numCol("received_at_ms", func(r *Row) uint64 { return r.ReceivedAtMs }),

	strCol("chat_id", func(r *Row) *string { return &r.ChatID }),
	strCol("thread_id", func(r *Row) *string { return &r.ThreadID }),
	strCol("event_ref", func(r *Row) *string { return &r.EventRef }),
	strCol("event_type", func(r *Row) *string { return &r.EventType }),
	strCol("author_id", func(r *Row) *string { return &r.AuthorID }),
	strCol("author_type", func(r *Row) *string { return &r.AuthorType }),
	strCol("visibility", func(r *Row) *string { return &r.Visibility }),
	numCol("is_welcome", func(r *Row) uint8 { return r.IsWelcome }),
	numCol("text_length", func(r *Row) uint32 { return r.TextLength }),
	strCol("system_message_type", func(r *Row) *string { return &r.SystemMessageType }),
	strCol("form_type", func(r *Row) *string { return &r.FormType }),

	strCol("agent_id", func(r *Row) *string { return &r.AgentID }),
	strCol("agent_name", func(r *Row) *string { return &r.AgentName }),
	strCol("customer_id", func(r *Row) *string { return &r.CustomerID }),
	arrCol("group_ids", func(r *Row) *[]uint32 { return &r.GroupIDs }),
	strsCol("group_names", func(r *Row) *[]string { return &r.GroupNames }),
	strCol("user_type", func(r *Row) *string { return &r.UserType }),
	strCol("reason", func(r *Row) *string { return &r.Reason }),
	strCol("requester_id", func(r *Row) *string { return &r.RequesterID }),

	strCol("tag", func(r *Row) *string { return &r.Tag }),
	strsCol("tags", func(r *Row) *[]string { return &r.Tags }),
	arrCol("transfer_group_ids", func(r *Row) *[]uint32 { return &r.TransferGroupIDs }),
	strsCol("transfer_agent_ids", func(r *Row) *[]string { return &r.TransferAgentIDs }),
	numCol("queue_position", func(r *Row) int32 { return r.QueuePosition }),
	numCol("queue_wait_time", func(r *Row) int32 { return r.QueueWaitTime }),
	numCol("queued_at_ms", func(r *Row) uint64 { return r.QueuedAtMs }),
	strCol("routing_status", func(r *Row) *string { return &r.RoutingStatus }),
	numCol("rating_score", func(r *Row) int8 { return r.RatingScore }),
	numCol("rating_has_score", func(r *Row) uint8 { return r.RatingHasScore }),
	strCol("rating_comment", func(r *Row) *string { return &r.RatingComment }),
	numCol("thread_created_at_ms", func(r *Row) uint64 { return r.ThreadCreatedAtMs }),
	numCol("thread_active", func(r *Row) uint8 { return r.ThreadActive }),
	numCol("continuous", func(r *Row) uint8 { return r.Continuous }),
	strCol("greeting_id", func(r *Row) *string { return &r.GreetingID }),

	strCol("customer_country", func(r *Row) *string { return &r.CustomerCountry }),
	strCol("customer_country_code", func(r *Row) *string { return &r.CustomerCountryCode }),
	strCol("customer_city", func(r *Row) *string { return &r.CustomerCity }),
	strCol("start_url", func(r *Row) *string { return &r.StartURL }),
	strCol("referrer", func(r *Row) *string { return &r.Referrer }),

	strCol("postback_id", func(r *Row) *string { return &r.PostbackID }),
	numCol("postback_toggled", func(r *Row) uint8 { return r.PostbackToggled }),
	strCol("button_type", func(r *Row) *string { return &r.ButtonType }),
	strCol("button_value", func(r *Row) *string { return &r.ButtonValue }),
	strCol("properties", func(r *Row) *string { return &r.Properties }),
	strCol("payload", func(r *Row) *string { return &r.Payload }),

	strCol("src_topic", func(r *Row) *string { return &r.SrcTopic }),
	numCol("src_partition", func(r *Row) int32 { return r.SrcPartition }),
	numCol("src_offset", func(r *Row) int64 { return r.SrcOffset }),
	numCol("src_index", func(r *Row) uint16 { return r.SrcIndex }),
	strCol("request_id", func(r *Row) *string { return &r.RequestID }),
	strCol("body_sha256", func(r *Row) *string { return &r.BodySHA256 }),
	strCol("ingest_version", func(r *Row) *string { return &r.IngestVersion }),
	strsCol("dedup_subjects", func(r *Row) *[]string { return &r.DedupSubjects }),
	strsCol("dedup_states", func(r *Row) *[]string { return &r.DedupStates }),
	// The INSERT's id, the same for every row.
	{name: "insert_id", fill: func(rows []Row, f *fill) any {
		out := scratch[uint64](f, len(rows))
		for i := range out {
			out[i] = f.insertID
		}
		return out
	}},
}

// insertColumns is the column list of every insert into events.
var insertColumns = func() string {
	names := make([]string, len(eventColumns))
	for i, c := range eventColumns {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}()

// eventColumn is one column of events: its name, how to build its values
// for a block (fill, or each for arrays), and for String and Array(String)
// columns the field (compact copies them).
type eventColumn struct {
	name string
	fill func(rows []Row, f *fill) any
	each func(col driver.BatchColumn, rows []Row) error // instead of fill: row by row
	str  func(*Row) *string
	strs func(*Row) *[]string
}

// fill is the state of one appendColumns call: one scratch slice per Go
// type, reused from column to column (Append copies the values).
type fill struct {
	insertID uint64
	bufs     map[reflect.Type]any
}

func scratch[T any](f *fill, n int) []T {
	t := reflect.TypeFor[T]()
	if b, ok := f.bufs[t].([]T); ok && len(b) == n {
		return b
	}
	b := make([]T, n)
	f.bufs[t] = b
	return b
}

func strCol(name string, field func(*Row) *string) eventColumn {
	return eventColumn{name: name, str: field, fill: func(rows []Row, f *fill) any {
		out := scratch[string](f, len(rows))
		for i := range rows {
			out[i] = *field(&rows[i])
		}
		return out
	}}
}

func numCol[T uint8 | uint16 | uint32 | uint64 | int8 | int32 | int64](name string, get func(*Row) T) eventColumn {
	return eventColumn{name: name, fill: func(rows []Row, f *fill) any {
		out := scratch[T](f, len(rows))
		for i := range rows {
			out[i] = get(&rows[i])
		}
		return out
	}}
}

// timeCol is a DateTime column from epoch milliseconds.
func timeCol(name string, ms func(*Row) uint64) eventColumn {
	return eventColumn{name: name, fill: func(rows []Row, f *fill) any {
		out := scratch[time.Time](f, len(rows))
		for i := range rows {
			out[i] = msTime(ms(&rows[i]))
		}
		return out
	}}
}

// arrCol is an Array(UInt32) column; nil becomes an empty array.
func arrCol(name string, field func(*Row) *[]uint32) eventColumn {
	return eventColumn{name: name, each: func(col driver.BatchColumn, rows []Row) error {
		for i := range rows {
			if err := appendArray(col, *field(&rows[i]), noUint32s); err != nil {
				return err
			}
		}
		return nil
	}}
}

// strsCol is an Array(String) column; nil becomes an empty array.
func strsCol(name string, field func(*Row) *[]string) eventColumn {
	return eventColumn{name: name, strs: field, each: func(col driver.BatchColumn, rows []Row) error {
		for i := range rows {
			if err := appendArray(col, *field(&rows[i]), noStrings); err != nil {
				return err
			}
		}
		return nil
	}}
}

// Empty arrays, boxed once: most rows have no tags, groups or subjects.
var (
	noUint32s any = []uint32{}
	noStrings any = []string{}
)

// appendArray appends one row of an Array column. Row by row, a typed
// slice takes clickhouse-go's reflection-free path; a column of slices
// given at once is walked by reflection, element by element, which cost
// more than all the other columns together.
func appendArray[T any](col driver.BatchColumn, v []T, empty any) error {
	if len(v) == 0 {
		return col.AppendRow(empty)
	}
	return col.AppendRow(v)
}

func msTime(ms uint64) time.Time { return time.UnixMilli(int64(ms)).UTC() }

// appendColumns appends the rows to the batch column by column (the fast
// path of clickhouse-go: one typed slice per column, no reflection per
// row). insertID is the INSERT's id, the same for every row (insert_id).
func appendColumns(b driver.Batch, rows []Row, insertID uint64) error {
	f := &fill{insertID: insertID, bufs: map[reflect.Type]any{}}
	for i, c := range eventColumns {
		var err error
		if c.each != nil {
			err = c.each(b.Column(i), rows)
		} else {
			err = b.Column(i).Append(c.fill(rows, f))
		}
		if err != nil {
			return fmt.Errorf("column %s: %w", c.name, err)
		}
	}
	return nil
}

// InsertColumns is the column list the processor writes into events, for
// tools that load Rows themselves: AppendRows fills a batch prepared as
// "INSERT INTO db.events (" + InsertColumns() + ")".
func InsertColumns() string { return insertColumns }

// AppendRows appends rows to such a batch, with insertID as their
// insert_id.
func AppendRows(b driver.Batch, rows []Row, insertID uint64) error {
	return appendColumns(b, rows, insertID)
}

// compact copies every string of the row, and of its string slices, into
// one allocation (and the string slices into one more). Decoded strings
// point into the decoder's copy of the whole record body; without this a
// row would keep that buffer alive, and batches would hold several times
// their size.
func (r *Row) compact() {
	p := unsafe.Pointer(r)
	n, k := 0, 0
	for _, off := range rowStrings {
		n += len(*(*string)(unsafe.Add(p, off)))
	}
	for _, off := range rowStringSlices {
		ss := *(*[]string)(unsafe.Add(p, off))
		k += len(ss)
		for _, s := range ss {
			n += len(s)
		}
	}
	if n > 0 {
		buf := make([]byte, 0, n)
		put := func(s string) string {
			if s == "" {
				return ""
			}
			start := len(buf)
			buf = append(buf, s...)
			return unsafe.String(&buf[start], len(s))
		}
		for _, off := range rowStrings {
			f := (*string)(unsafe.Add(p, off))
			*f = put(*f)
		}
		var strs []string
		if k > 0 {
			strs = make([]string, 0, k)
		}
		for _, off := range rowStringSlices {
			f := (*[]string)(unsafe.Add(p, off))
			if len(*f) == 0 {
				*f = nil
				continue
			}
			start := len(strs)
			for _, s := range *f {
				strs = append(strs, put(s))
			}
			*f = strs[start:len(strs):len(strs)]
		}
	}
	r.GroupIDs = append([]uint32(nil), r.GroupIDs...)
	r.TransferGroupIDs = append([]uint32(nil), r.TransferGroupIDs...)
}

// rowStrings and rowStringSlices are the offsets in Row of the fields of
// its String and Array(String) columns, taken once from eventColumns so
// compact, which runs for every row, walks plain offsets.
var rowStrings, rowStringSlices = func() (strs, slices []uintptr) {
	var r Row
	base := uintptr(unsafe.Pointer(&r))
	for _, c := range eventColumns {
		switch {
		case c.str != nil:
			strs = append(strs, uintptr(unsafe.Pointer(c.str(&r)))-base)
		case c.strs != nil:
			slices = append(slices, uintptr(unsafe.Pointer(c.strs(&r)))-base)
		}
	}
	return strs, slices
}()
