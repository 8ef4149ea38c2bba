package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/simulate"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/processor"
	"github.com/lcpipe/lcpipe/schema"
)

// sqlLiteral renders one value of columnsOf as a ClickHouse literal.
func sqlLiteral(v any) string {
	switch x := v.(type) {
	case string:
		return quote(x)
	case time.Time:
		return "'" + x.UTC().Format("2006-01-02 15:04:05") + "'"
	case []uint32:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = strconv.FormatUint(uint64(e), 10)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case []string:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = quote(e)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return fmt.Sprint(v)
}

// columnsOf returns the processor's column slices for rows (what
// processor.AppendRows gives a batch), by capturing them.
func columnsOf(rows []processor.Row) []any {
	c := &captureBatch{}
	if err := processor.AppendRows(c, rows, 0); err != nil {
		panic(err)
	}
	return c.cols
}

// captureBatch keeps the column slices appended to it (a copy: the
// processor reuses its scratch slices from column to column).
type captureBatch struct {
	driver.Batch
	cols []any
}

func (c *captureBatch) Column(i int) driver.BatchColumn {
	for len(c.cols) <= i {
		c.cols = append(c.cols, nil)
	}
	return captureColumn{c: c, i: i}
}

type captureColumn struct {
	c *captureBatch
	i int
}

func (col captureColumn) Append(v any) error {
	rv := reflect.ValueOf(v)
	cp := reflect.MakeSlice(rv.Type(), rv.Len(), rv.Len())
	reflect.Copy(cp, rv)
	col.c.cols[col.i] = cp.Interface()
	return nil
}

// AppendRow collects one row's value (the processor appends array
// columns row by row) into a slice of the value's type.
func (col captureColumn) AppendRow(v any) error {
	rv := reflect.ValueOf(v)
	cur := col.c.cols[col.i]
	if cur == nil {
		cur = reflect.MakeSlice(reflect.SliceOf(rv.Type()), 0, 16).Interface()
	}
	col.c.cols[col.i] = reflect.Append(reflect.ValueOf(cur), rv).Interface()
	return nil
}

// valuesInserts renders rows as INSERT ... VALUES statements (for chdb
// only: the 18.16 server gets PrepareBatch).
func valuesInserts(db string, rows []processor.Row, per int) []string {
	var out []string
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		cols := columnsOf(chunk)
		var b strings.Builder
		b.WriteString("INSERT INTO " + db + ".events (" + processor.InsertColumns() + ") VALUES ")
		for i := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('(')
			for c, col := range cols {
				if c > 0 {
					b.WriteByte(',')
				}
				b.WriteString(sqlLiteral(reflect.ValueOf(col).Index(i).Interface()))
			}
			b.WriteByte(')')
		}
		out = append(out, b.String())
	}
	return out
}

// chdbCell normalises a JSONCompact cell: 64-bit integers arrive quoted,
// DateTime as text.
func chdbCell(v any, typ string) any {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(typ, "DateTime") {
			t, err := time.Parse("2006-01-02 15:04:05", x)
			if err == nil {
				return float64(t.UnixMilli())
			}
		}
		if f, err := strconv.ParseFloat(x, 64); err == nil && !strings.HasPrefix(typ, "String") {
			return f
		}
		return x
	case float64:
		return x
	case nil:
		return nil
	case []any:
		for i := range x {
			x[i] = chdbCell(x[i], strings.TrimSuffix(strings.TrimPrefix(typ, "Array("), ")"))
		}
		return x
	}
	return v
}

func sameCell(a, b any) bool {
	fa, oka := a.(float64)
	fb, okb := b.(float64)
	if oka && okb {
		return near(fa, fb) || (math.IsNaN(fa) && math.IsNaN(fb))
	}
	return reflect.DeepEqual(a, b)
}

// TestSQLOnCurrentClickHouse applies every migration on the current
// ClickHouse engine (chdb), loads the same events as into the 18.16 server,
// runs every panel on both and checks the answers agree.
func TestSQLOnCurrentClickHouse(t *testing.T) {
	cfg := simulate.DefaultConfig()
	cfg.Seed = 11
	ds, err := simulate.Generate(cfg, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), 12*time.Hour, 300)
	if err != nil {
		t.Fatal(err)
	}
	var rows []processor.Row
	rowsOf(t, ds.Deliveries, func(r []processor.Row) { rows = append(rows, r...) })

	ctx := context.Background()
	chCfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, chCfg)
	if _, err := schema.Migrate(ctx, conn, schema.Options{Database: chCfg.Database}, nil); err != nil {
		t.Fatal(err)
	}
	if err := insertRows(ctx, conn, chCfg.Database, rows); err != nil {
		t.Fatal(err)
	}

	const db = "lc"
	stmts := []testenv.ChdbStatement{{SQL: "CREATE DATABASE IF NOT EXISTS " + db}}
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		ss, err := m.Statements(schema.Options{Database: db})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			stmts = append(stmts, testenv.ChdbStatement{SQL: s})
		}
	}
	for _, s := range valuesInserts(db, rows, 2000) {
		stmts = append(stmts, testenv.ChdbStatement{SQL: s})
	}
	setup := len(stmts)
	// Two rounds: every panel over the dataset's range before anything is
	// settled, then, after the Settler's statements ran on both engines for
	// the same days, over six days with hourly buckets (settled rows and
	// hours read from the rollups).
	type ref struct {
		round string
		d     Dashboard
		panel Panel
		want  *Result
	}
	params := func(round string, pn Panel, db string) Params {
		q := Params{DB: db, FromMS: ds.From.UnixMilli(), ToMS: ds.To.UnixMilli(), Group: -1}
		if panelScope(pn.ID) == "received" {
			q.FromMS, q.ToMS = ds.From.Add(-time.Hour).UnixMilli(), ds.To.Add(2*time.Hour).UnixMilli()
		}
		if round == "settled" {
			q.FromMS, q.ToMS = ds.From.Add(30*time.Minute).UnixMilli(), ds.From.Add(6*24*time.Hour+30*time.Minute).UnixMilli()
		}
		q.BucketS = Bucket(q.FromMS, q.ToMS)
		return q
	}
	var panels []ref
	round := func(name string) {
		for _, d := range All() {
			for _, pn := range d.Panels {
				want, err := Run(ctx, conn, pn, params(name, pn, chCfg.Database))
				if err != nil {
					t.Fatalf("%s %s/%s on 18.16: %v", name, d.UID, pn.ID, err)
				}
				stmts = append(stmts, testenv.ChdbStatement{SQL: pn.Render(params(name, pn, db)), Format: "JSONCompact"})
				panels = append(panels, ref{name, d, pn, want})
			}
		}
	}
	round("live")
	settler := NewSettler(conn, SettlerConfig{Database: chCfg.Database, After: time.Hour})
	t.Cleanup(func() { settler.Close(context.Background()) })
	if st, err := settler.Pass(ctx); err != nil || st.Days == 0 {
		t.Fatalf("settle on 18.16: %+v, %v", st, err)
	}
	marks, err := conn.Query(ctx, "SELECT name, day, upto_ms, fingerprint, source_rows, rows FROM "+chCfg.Database+".rollup_days ORDER BY name, day")
	if err != nil {
		t.Fatal(err)
	}
	for marks.Next() {
		var name string
		var d time.Time
		var uptoMS, fp, src, n uint64
		if err := marks.Scan(&name, &d, &uptoMS, &fp, &src, &n); err != nil {
			t.Fatal(err)
		}
		for _, r := range rollups {
			if r.name == name {
				stage := name + "_stage"
				upto := time.UnixMilli(int64(uptoMS)).UTC()
				qs := append(r.fillStatements(db, stage, d.UTC(), upto), r.swapStatements(db, stage, d.UTC(), upto, fp, src, n)...)
				for _, q := range qs {
					stmts = append(stmts, testenv.ChdbStatement{SQL: q})
				}
			}
		}
	}
	marks.Close()
	round("settled")
	res := testenv.RunChdb(t, false, stmts...)
	setupOK := func(i int) {
		if !res[i].OK {
			t.Fatalf("chdb statement %d failed: %s\n%.300s", i, res[i].Error, stmts[i].SQL)
		}
	}
	for i := 0; i < setup; i++ {
		setupOK(i)
	}
	k := setup
	for _, r := range panels {
		if r.round == "settled" && k < len(stmts) && stmts[k].Format == "" {
			for ; stmts[k].Format == ""; k++ {
				setupOK(k)
			}
		}
		out := res[k]
		k++
		name := r.round + " " + r.d.UID + "/" + r.panel.ID
		if !out.OK {
			t.Errorf("%s fails on current ClickHouse: %s", name, out.Error)
			continue
		}
		var jc struct {
			Meta []struct{ Name, Type string }
			Data [][]any
		}
		if err := json.Unmarshal([]byte(out.Output), &jc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.panel.ID == "freshness" || r.panel.ID == "consumer_lag" {
			continue // now()-relative
		}
		want := r.want
		if len(jc.Data) != len(want.Rows) {
			t.Errorf("%s: %d rows on current ClickHouse, %d on 18.16", name, len(jc.Data), len(want.Rows))
			continue
		}
		for i := range jc.Data {
			for j := range jc.Data[i] {
				got := chdbCell(jc.Data[i][j], jc.Meta[j].Type)
				w := want.Rows[i][j]
				if arr, ok := w.([]any); ok {
					w = arr
				}
				if !sameCell(got, w) {
					t.Errorf("%s row %d column %s: current %v, 18.16 %v", name, i, jc.Meta[j].Name, got, w)
				}
			}
		}
	}
}
