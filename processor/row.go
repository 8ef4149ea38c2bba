package processor

import (
	"fmt"
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

// insertColumns is the column list of every insert into events, in the
// order rowColumns fills them.
const insertColumns = "event_id, organization_id, license_id, action, kind, dedup_key, occurred_at, occurred_at_ms, received_at, received_at_ms, " +
	"chat_id, thread_id, event_ref, event_type, author_id, author_type, visibility, is_welcome, text_length, system_message_type, form_type, " +
	"agent_id, agent_name, customer_id, group_ids, group_names, user_type, reason, requester_id, " +
	"tag, tags, transfer_group_ids, transfer_agent_ids, queue_position, queue_wait_time, queued_at_ms, routing_status, rating_score, rating_has_score, rating_comment, thread_created_at_ms, thread_active, continuous, greeting_id, " +
	"customer_country, customer_country_code, customer_city, start_url, referrer, " +
	"postback_id, postback_toggled, button_type, button_value, properties, payload, " +
	"src_topic, src_partition, src_offset, src_index, request_id, body_sha256, ingest_version, " +
	"dedup_subjects, dedup_states, insert_id"

func msTime(ms uint64) time.Time { return time.UnixMilli(int64(ms)).UTC() }

// appendColumns appends the rows to the batch column by column (the fast
// path of clickhouse-go: one typed slice per column, no reflection per row).
// The column slices are scratch space reused from column to column: Append
// copies the values into the block. insertID is the INSERT's id, the same
// for every row (insert_id).
func appendColumns(b driver.Batch, rows []Row, insertID uint64) error {
	n := len(rows)
	var (
		sbuf  = make([]string, n)
		u8buf = make([]uint8, n)
		u64b  = make([]uint64, n)
		i32b  = make([]int32, n)
		tbuf  = make([]time.Time, n)
		u32ss = make([][]uint32, n)
		strsb = make([][]string, n)
	)
	strs := func(f func(*Row) string) func() any { return fillColumn(rows, sbuf, f) }
	u8 := func(f func(*Row) uint8) func() any { return fillColumn(rows, u8buf, f) }
	u64 := func(f func(*Row) uint64) func() any { return fillColumn(rows, u64b, f) }
	i32 := func(f func(*Row) int32) func() any { return fillColumn(rows, i32b, f) }
	times := func(f func(*Row) uint64) func() any {
		return fillColumn(rows, tbuf, func(r *Row) time.Time { return msTime(f(r)) })
	}
	// Array columns: nil becomes an empty array.
	empty32, emptyStr := []uint32{}, []string{}
	u32s := func(f func(*Row) []uint32) func() any {
		return fillColumn(rows, u32ss, func(r *Row) []uint32 {
			if v := f(r); v != nil {
				return v
			}
			return empty32
		})
	}
	strss := func(f func(*Row) []string) func() any {
		return fillColumn(rows, strsb, func(r *Row) []string {
			if v := f(r); v != nil {
				return v
			}
			return emptyStr
		})
	}
	// Each entry fills its scratch slice only when called, just before its
	// column's Append.
	cols := []func() any{
		strs(func(r *Row) string { return r.EventID }),
		strs(func(r *Row) string { return r.OrganizationID }),
		u64(func(r *Row) uint64 { return r.LicenseID }),
		strs(func(r *Row) string { return r.Action }),
		strs(func(r *Row) string { return r.Kind }),
		strs(func(r *Row) string { return r.DedupKey }),
		times(func(r *Row) uint64 { return r.OccurredAtMs }),
		u64(func(r *Row) uint64 { return r.OccurredAtMs }),
		times(func(r *Row) uint64 { return r.ReceivedAtMs }),
		u64(func(r *Row) uint64 { return r.ReceivedAtMs }),

		strs(func(r *Row) string { return r.ChatID }),
		strs(func(r *Row) string { return r.ThreadID }),
		strs(func(r *Row) string { return r.EventRef }),
		strs(func(r *Row) string { return r.EventType }),
		strs(func(r *Row) string { return r.AuthorID }),
		strs(func(r *Row) string { return r.AuthorType }),
		strs(func(r *Row) string { return r.Visibility }),
		u8(func(r *Row) uint8 { return r.IsWelcome }),
		func() any {
			out := make([]uint32, n)
			for i := range rows {
				out[i] = rows[i].TextLength
			}
			return out
		},
		strs(func(r *Row) string { return r.SystemMessageType }),
		strs(func(r *Row) string { return r.FormType }),

		strs(func(r *Row) string { return r.AgentID }),
		strs(func(r *Row) string { return r.AgentName }),
		strs(func(r *Row) string { return r.CustomerID }),
		u32s(func(r *Row) []uint32 { return r.GroupIDs }),
		strss(func(r *Row) []string { return r.GroupNames }),
		strs(func(r *Row) string { return r.UserType }),
		strs(func(r *Row) string { return r.Reason }),
		strs(func(r *Row) string { return r.RequesterID }),

		strs(func(r *Row) string { return r.Tag }),
		strss(func(r *Row) []string { return r.Tags }),
		u32s(func(r *Row) []uint32 { return r.TransferGroupIDs }),
		strss(func(r *Row) []string { return r.TransferAgentIDs }),
		i32(func(r *Row) int32 { return r.QueuePosition }),
		i32(func(r *Row) int32 { return r.QueueWaitTime }),
		u64(func(r *Row) uint64 { return r.QueuedAtMs }),
		strs(func(r *Row) string { return r.RoutingStatus }),
		func() any {
			out := make([]int8, n)
			for i := range rows {
				out[i] = rows[i].RatingScore
			}
			return out
		},
		u8(func(r *Row) uint8 { return r.RatingHasScore }),
		strs(func(r *Row) string { return r.RatingComment }),
		u64(func(r *Row) uint64 { return r.ThreadCreatedAtMs }),
		u8(func(r *Row) uint8 { return r.ThreadActive }),
		u8(func(r *Row) uint8 { return r.Continuous }),
		strs(func(r *Row) string { return r.GreetingID }),

		strs(func(r *Row) string { return r.CustomerCountry }),
		strs(func(r *Row) string { return r.CustomerCountryCode }),
		strs(func(r *Row) string { return r.CustomerCity }),
		strs(func(r *Row) string { return r.StartURL }),
		strs(func(r *Row) string { return r.Referrer }),

		strs(func(r *Row) string { return r.PostbackID }),
		u8(func(r *Row) uint8 { return r.PostbackToggled }),
		strs(func(r *Row) string { return r.ButtonType }),
		strs(func(r *Row) string { return r.ButtonValue }),
		strs(func(r *Row) string { return r.Properties }),
		strs(func(r *Row) string { return r.Payload }),

		strs(func(r *Row) string { return r.SrcTopic }),
		i32(func(r *Row) int32 { return r.SrcPartition }),
		func() any {
			out := make([]int64, n)
			for i := range rows {
				out[i] = rows[i].SrcOffset
			}
			return out
		},
		func() any {
			out := make([]uint16, n)
			for i := range rows {
				out[i] = rows[i].SrcIndex
			}
			return out
		},
		strs(func(r *Row) string { return r.RequestID }),
		strs(func(r *Row) string { return r.BodySHA256 }),
		strs(func(r *Row) string { return r.IngestVersion }),
		strss(func(r *Row) []string { return r.DedupSubjects }),
		strss(func(r *Row) []string { return r.DedupStates }),
		u64(func(*Row) uint64 { return insertID }),
	}
	for i, c := range cols {
		if err := b.Column(i).Append(c()); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return nil
}

// strFields lists the row's string fields, for compact.
func (r *Row) strFields() [47]*string {
	return [47]*string{
		&r.EventID, &r.OrganizationID, &r.Action, &r.Kind, &r.DedupKey,
		&r.ChatID, &r.ThreadID, &r.EventRef, &r.EventType, &r.AuthorID, &r.AuthorType, &r.Visibility,
		&r.SystemMessageType, &r.FormType, &r.AgentID, &r.AgentName, &r.CustomerID, &r.UserType, &r.Reason,
		&r.RequesterID, &r.Tag, &r.RoutingStatus, &r.RatingComment, &r.GreetingID,
		&r.CustomerCountry, &r.CustomerCountryCode, &r.CustomerCity, &r.StartURL, &r.Referrer,
		&r.PostbackID, &r.ButtonType, &r.ButtonValue, &r.Properties, &r.Payload,
		&r.SrcTopic, &r.RequestID, &r.BodySHA256, &r.IngestVersion,
		// spare slots keep the array size fixed; nil entries are skipped
	}
}

// compact copies every string of the row, and of its string slices, into
// one allocation. Decoded strings point into the decoder's copy of the
// whole record body; without this a row would keep that buffer alive, and
// batches would hold several times their size.
func (r *Row) compact() {
	fields := r.strFields()
	n := 0
	for _, f := range fields {
		if f != nil {
			n += len(*f)
		}
	}
	for _, ss := range [][]string{r.GroupNames, r.Tags, r.TransferAgentIDs} {
		for _, s := range ss {
			n += len(s)
		}
	}
	if n == 0 {
		return
	}
	buf := make([]byte, 0, n)
	put := func(s string) string {
		if s == "" {
			return ""
		}
		start := len(buf)
		buf = append(buf, s...)
		return unsafe.String(&buf[start], len(s))
	}
	for _, f := range fields {
		if f != nil {
			*f = put(*f)
		}
	}
	r.GroupNames = cloneStrings(r.GroupNames, put)
	r.Tags = cloneStrings(r.Tags, put)
	r.TransferAgentIDs = cloneStrings(r.TransferAgentIDs, put)
	r.GroupIDs = append([]uint32(nil), r.GroupIDs...)
	r.TransferGroupIDs = append([]uint32(nil), r.TransferGroupIDs...)
}

func cloneStrings(ss []string, put func(string) string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = put(s)
	}
	return out
}

// fillColumn returns a function that fills buf (one scratch slice per
// column type, reused column after column) with f of every row.
func fillColumn[T any](rows []Row, buf []T, f func(*Row) T) func() any {
	return func() any {
		for i := range rows {
			buf[i] = f(&rows[i])
		}
		return buf
	}
}
