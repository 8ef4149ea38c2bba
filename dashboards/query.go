package dashboards

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Column names one result column and its ClickHouse type.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Result is a panel's rows, JSON-ready: DateTime values become epoch
// milliseconds, NaN and infinities become null.
type Result struct {
	Columns []Column `json:"columns"`
	Rows    [][]any  `json:"rows"`
	Elapsed float64  `json:"elapsed_ms"`
}

// Run executes the panel's SQL filled with p and returns its rows. The
// connection should be the read-only analyst user's: Run only reads.
// Without p.Watermarks it reads them first (one small query).
func Run(ctx context.Context, conn driver.Conn, panel Panel, p Params) (*Result, error) {
	if p.Watermarks == nil {
		w, err := ReadWatermarks(ctx, conn, p.DB)
		if err != nil {
			return nil, fmt.Errorf("dashboards: panel %s: %w", panel.ID, err)
		}
		p.Watermarks = &w
	}
	return RunSQL(ctx, conn, panel.ID, panel.Render(p))
}

// ReadWatermarks reads how far the rollups are settled (0: not at all).
func ReadWatermarks(ctx context.Context, conn driver.Conn, db string) (Watermarks, error) {
	var w Watermarks
	q := fmt.Sprintf("SELECT maxIf(upto_ms, name = 'threads_settled'), maxIf(upto_ms, name = 'webhook_hours') FROM %s.rollup_days", db)
	if err := conn.QueryRow(ctx, q).Scan(&w.ThreadsMS, &w.WebhookHoursMS); err != nil {
		return w, fmt.Errorf("read rollup watermarks: %w", err)
	}
	return w, nil
}

// RunSQL runs complete SQL (name labels errors) and returns its rows.
func RunSQL(ctx context.Context, conn driver.Conn, name, sql string) (*Result, error) {
	panel := Panel{ID: name}
	start := time.Now()
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("dashboards: panel %s: %w", panel.ID, err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	res := &Result{Columns: make([]Column, len(types)), Rows: [][]any{}}
	for i, ct := range types {
		res.Columns[i] = Column{Name: ct.Name(), Type: ct.DatabaseTypeName()}
	}
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("dashboards: panel %s: scan: %w", panel.ID, err)
		}
		row := make([]any, len(types))
		for i, d := range dest {
			row[i] = jsonValue(reflect.ValueOf(d).Elem().Interface())
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dashboards: panel %s: %w", panel.ID, err)
	}
	res.Elapsed = float64(time.Since(start).Microseconds()) / 1000
	return res, nil
}

// jsonValue converts a scanned value into something encoding/json accepts
// and JavaScript reads without surprises.
func jsonValue(v any) any {
	switch x := v.(type) {
	case time.Time:
		return float64(x.UnixMilli())
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return x
	case float32:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return f
	case uint64:
		return float64(x)
	case int64:
		return float64(x)
	case *string:
		if x == nil {
			return nil
		}
		return *x
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice {
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = jsonValue(rv.Index(i).Interface())
		}
		return out
	}
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		return jsonValue(rv.Elem().Interface())
	}
	return v
}

// Float reads a numeric cell of a Result (null is NaN).
func Float(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case float32:
		return float64(x)
	case int:
		return float64(x)
	case int8:
		return float64(x)
	case int16:
		return float64(x)
	case int32:
		return float64(x)
	case uint8:
		return float64(x)
	case uint16:
		return float64(x)
	case uint32:
		return float64(x)
	}
	return math.NaN()
}
