// Package dashboards holds the prebuilt chat-analytics dashboards: one Go
// definition per dashboard (panels with title, description, SQL, chart type
// and unit) that is the single source for both renderings, the Grafana
// dashboard JSON (grafana.go, committed under grafana/) and the built-in
// viewer served by `lcpipe dashboards` (viewer.go, assets in web/).
//
// Panel SQL is written once with placeholders that each rendering fills:
//
//	{db}              database of the analytics tables
//	{from_ms} {to_ms} time range, epoch milliseconds (UInt64 literals)
//	{bucket_s}        chart bucket in seconds (>= 60)
//	{org}             organization id, '' for all (String literal)
//	{group}           group id, -1 for all (Int64 literal)
//	{agent}           agent id, '' for all (String literal)
//	{threads}         the `threads` view's rows of the range: settled rows
//	                  (threads_settled) for the days the Settler finished,
//	                  merged live from the state rows of the range's hours
//	                  for the rest (see threadsSource): fast for any range
//	{webhook_minutes} webhook_minutes rows of the range and organization,
//	                  whole hours from webhook_hours when settled
//	{thread_filter}   the usual WHERE condition on those rows: started in
//	                  range and matching org, group and agent
//
// Every query must run on ClickHouse 18.16 and on current servers, as the
// read-only analyst user (no SETTINGS: readonly=1 forbids changing them).
package dashboards

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Viz is how a panel is drawn.
type Viz string

const (
	// Stat shows the first row's columns as big numbers (first is main).
	Stat Viz = "stat"
	// TimeSeries draws lines: first column t (DateTime), then one column
	// per series; or (t, series, value) rows when the panel sets Long.
	TimeSeries Viz = "timeseries"
	// Bar draws horizontal bars: first column the label, second the value
	// (further columns are shown in the tooltip).
	Bar Viz = "bar"
	// Table shows the rows as they come.
	Table Viz = "table"
)

// Unit says how values are formatted.
type Unit string

const (
	UnitNone    Unit = "none"
	UnitSeconds Unit = "s"
	UnitPercent Unit = "percent"
	UnitPerMin  Unit = "per-minute"
)

// Panel is one chart or number of a dashboard.
type Panel struct {
	// ID is stable and unique within the dashboard (Grafana panel ids and
	// the viewer's API use it).
	ID          string
	Title       string
	Description string
	Viz         Viz
	Unit        Unit
	// Long marks a TimeSeries whose rows are (t, series, value).
	Long bool
	// Hidden columns are returned (tests and tooltips use them) but not drawn.
	Hidden []string
	// Width in a 24-column grid (default 8) and Height in grid rows (default 8).
	Width, Height int
	SQL           string
	// Prom, when set, are the Prometheus queries Grafana runs for this
	// panel instead of SQL (the same figures from the processes'
	// /metrics); the built-in viewer always runs SQL.
	Prom []PromQuery
}

// PromQuery is one Prometheus query of a panel and the name of its series
// (the column the SQL names the same figure).
type PromQuery struct{ Expr, Legend string }

// Dashboard is one page of panels.
type Dashboard struct {
	UID         string
	Title       string
	Description string
	Panels      []Panel
}

// Params are the values a viewer request fills the placeholders with.
type Params struct {
	DB      string
	FromMS  int64
	ToMS    int64
	BucketS int64
	Org     string
	Group   int64 // -1 = all
	Agent   string
	// Watermarks of the rollups, when known (Run reads them); nil renders
	// subqueries that read them.
	Watermarks *Watermarks
}

// Watermarks say how far the day rollups are settled (epoch ms):
// threads that started before ThreadsMS are in threads_settled, webhook
// hours before WebhookHoursMS in webhook_hours.
type Watermarks struct {
	ThreadsMS, WebhookHoursMS uint64
}

// threadFilterRange is the part of {thread_filter} that always applies.
const threadFilterRange = `started_ms >= {from_ms} AND started_ms < {to_ms}`

// threadFilter is {thread_filter} with every filter as a condition (the
// Grafana rendering: its variables are only known at query time).
const threadFilter = threadFilterRange + `
    AND ({org} = '' OR organization_id = {org})
    AND ({group} < 0 OR has(group_ids, toUInt32({group})))
    AND ({agent} = '' OR has(agent_ids, {agent}))`

// quote makes a ClickHouse string literal.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

// expand replaces the placeholders with the given fragments; filter is
// what {thread_filter} stands for.
func expand(sql, filter string, vals map[string]string) string {
	sql = strings.ReplaceAll(sql, "{threads}", threadsSource())
	sql = strings.ReplaceAll(sql, "{webhook_minutes}", webhookSource)
	sql = strings.ReplaceAll(sql, "{thread_filter}", filter)
	sql = strings.NewReplacer(
		"{hours_from_s}", webhookHoursFrom,
		"{hours_to_s}", webhookHoursTo,
	).Replace(sql)
	// The rollups' watermarks: literals when the caller read them first
	// (the viewer: 18.16 plans a literal better than a scalar subquery),
	// else subqueries (Grafana).
	if _, ok := vals["settled_ms"]; !ok {
		sql = strings.ReplaceAll(sql, "{settled_ms}", settledWatermark)
	}
	if _, ok := vals["webhook_ms"]; !ok {
		sql = strings.ReplaceAll(sql, "{webhook_ms}", webhookWatermark)
	}
	pairs := make([]string, 0, 2*len(vals))
	for k, v := range vals {
		pairs = append(pairs, "{"+k+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(sql)
}

// Render fills the panel's SQL with literal values for the viewer.
func (p Panel) Render(v Params) string {
	bucket := v.BucketS
	if bucket < 60 {
		bucket = 60
	}
	// Only the filters in use: a condition on group_ids or agent_ids makes
	// ClickHouse merge those arrays for every thread even when it is true.
	filter := threadFilterRange
	if v.Org != "" {
		filter += "\n    AND organization_id = {org}"
	}
	if v.Group >= 0 {
		filter += "\n    AND has(group_ids, toUInt32({group}))"
	}
	if v.Agent != "" {
		filter += "\n    AND has(agent_ids, {agent})"
	}
	vals := map[string]string{
		"db":       v.DB,
		"from_ms":  strconv.FormatInt(v.FromMS, 10),
		"to_ms":    strconv.FormatInt(v.ToMS, 10),
		"bucket_s": strconv.FormatInt(bucket, 10),
		"org":      quote(v.Org),
		"group":    strconv.FormatInt(v.Group, 10),
		"agent":    quote(v.Agent),
	}
	if w := v.Watermarks; w != nil {
		vals["settled_ms"] = "toUInt64(" + strconv.FormatUint(w.ThreadsMS, 10) + ")"
		vals["webhook_ms"] = "toUInt64(" + strconv.FormatUint(w.WebhookHoursMS, 10) + ")"
	}
	return expand(p.SQL, filter, vals)
}

// Find returns the dashboard with the uid.
func Find(uid string) (Dashboard, bool) {
	for _, d := range All() {
		if d.UID == uid {
			return d, true
		}
	}
	return Dashboard{}, false
}

// Panel returns the dashboard's panel with the id.
func (d Dashboard) Panel(id string) (Panel, bool) {
	for _, p := range d.Panels {
		if p.ID == id {
			return p, true
		}
	}
	return Panel{}, false
}

// Bucket chooses the chart bucket for a range: about 120 points, at least
// a minute, rounded to a whole number of minutes, or of hours from an hour
// up (so hourly rollups fit whole buckets: webhookSource).
func Bucket(fromMS, toMS int64) int64 {
	s := (toMS - fromMS) / 1000 / 120
	switch {
	case s < 60:
		return 60
	case s < 3600:
		return s / 60 * 60
	}
	return s / 3600 * 3600
}

// withDefaults fills the layout defaults.
func (p Panel) withDefaults() Panel {
	p.Width = cmp.Or(p.Width, 8)
	p.Height = cmp.Or(p.Height, 8)
	p.Unit = cmp.Or(p.Unit, UnitNone)
	return p
}

func (p Panel) String() string { return fmt.Sprintf("%s (%s)", p.ID, p.Title) }
