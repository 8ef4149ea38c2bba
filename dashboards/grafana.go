package dashboards

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// GrafanaOptions say where the generated Grafana files point.
type GrafanaOptions struct {
	// DatasourceUID is the uid of the provisioned ClickHouse datasource.
	DatasourceUID string
	// Host, Port, User, Password and Database of ClickHouse as Grafana
	// reaches it (native protocol).
	Host     string
	Port     int
	User     string
	Password string
	Database string
	// DashboardsPath is where Grafana finds the dashboard JSON files.
	DashboardsPath string
	// PrometheusUID and PrometheusURL: the Prometheus scraping the admin
	// listeners (panels with Prom queries read it); JaegerUID and JaegerURL:
	// the trace store (the collector exports traces to it).
	PrometheusUID, PrometheusURL string
	JaegerUID, JaegerURL         string
	// Organization, when set, fixes the dashboards to that organization:
	// the org variable becomes a hidden constant (GrafanaOrgFiles). Empty:
	// a variable listing every organization (the shared dashboards).
	Organization string
}

// DefaultGrafanaOptions match docker-compose.yml: service clickhouse, the
// read-only analyst user, dashboards mounted at /var/lib/grafana/dashboards.
// The password is not written in the file: Grafana expands environment
// variables in provisioning files, and docker-compose.yml passes the
// generated one (.env, make compose-env).
func DefaultGrafanaOptions() GrafanaOptions {
	return GrafanaOptions{DatasourceUID: "lcpipe-clickhouse", Host: "clickhouse", Port: 9000, User: "analyst", Password: "${ANALYST_CLICKHOUSE_PASSWORD}",
		Database: "livechat", DashboardsPath: "/var/lib/grafana/dashboards",
		PrometheusUID: "lcpipe-prometheus", PrometheusURL: "http://prometheus:9090",
		JaegerUID: "lcpipe-jaeger", JaegerURL: "http://jaeger:16686"}
}

// PluginID is the official ClickHouse datasource plugin.
const PluginID = "grafana-clickhouse-datasource"

// The plugin's target formats (its Format enum).
const (
	grafanaFormatTimeSeries = 0
	grafanaFormatTable      = 1
)

// allValue is what a Grafana variable holds when "All" is selected; the SQL
// maps it to the viewer's "no filter" values (” and -1).
const allValue = "__all"

// GrafanaSQL renders the panel's SQL for Grafana: time range and interval
// from Grafana's global variables, filters from the dashboard variables
// org, group and agent (sqlstring-quoted by Grafana).
func (p Panel) GrafanaSQL(db string) string {
	strVar := func(name string) string {
		return fmt.Sprintf("replaceRegexpOne(${%s:sqlstring}, '^%s$', '')", name, allValue)
	}
	return expand(p.SQL, threadFilter, map[string]string{
		"db":       db,
		"from_ms":  "${__from}",
		"to_ms":    "${__to}",
		"bucket_s": "(if(${__interval_ms} >= 3600000, intDiv(${__interval_ms}, 3600000) * 3600, intDiv(greatest(${__interval_ms}, 60000), 60000) * 60))",
		"org":      strVar("org"),
		"group":    fmt.Sprintf("toInt64(if(${group:sqlstring} = '%s', '-1', ${group:sqlstring}))", allValue),
		"agent":    strVar("agent"),
	})
}

// ViewerSQLForGrafanaValues substitutes the variables of GrafanaSQL the way
// Grafana does for concrete values, so tests can run the Grafana rendering.
func ViewerSQLForGrafanaValues(sql string, p Params, intervalMS int64) string {
	sq := func(s string) string {
		if s == "" {
			s = allValue
		}
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	group := allValue
	if p.Group >= 0 {
		group = fmt.Sprint(p.Group)
	}
	return strings.NewReplacer(
		"${__from}", fmt.Sprint(p.FromMS), "${__to}", fmt.Sprint(p.ToMS), "${__interval_ms}", fmt.Sprint(intervalMS),
		"${org:sqlstring}", sq(p.Org), "${group:sqlstring}", sq(group), "${agent:sqlstring}", sq(p.Agent),
	).Replace(sql)
}

func grafanaUnit(p Panel) string {
	switch p.Unit {
	case UnitSeconds:
		return "s"
	case UnitPercent:
		return "percent"
	case UnitPerMin:
		return "cpm"
	}
	return "short"
}

// fieldOverrides give columns named *_s seconds and *_pct percent whatever
// the panel's main unit, as the viewer does.
func fieldOverrides(p Panel) []any {
	ov := []any{
		map[string]any{"matcher": map[string]any{"id": "byRegexp", "options": ".*_s$"},
			"properties": []any{map[string]any{"id": "unit", "value": "s"}}},
		map[string]any{"matcher": map[string]any{"id": "byRegexp", "options": ".*_pct$"},
			"properties": []any{map[string]any{"id": "unit", "value": "percent"}}},
	}
	for _, h := range p.Hidden {
		ov = append(ov, map[string]any{"matcher": map[string]any{"id": "byName", "options": h},
			"properties": []any{map[string]any{"id": "custom.hideFrom", "value": map[string]any{"legend": true, "tooltip": false, "viz": true}}}})
	}
	return ov
}

func (o GrafanaOptions) datasource() map[string]any {
	return map[string]any{"type": PluginID, "uid": o.DatasourceUID}
}

func (o GrafanaOptions) prometheus() map[string]any {
	return map[string]any{"type": "prometheus", "uid": o.PrometheusUID}
}

// targets are the panel's Grafana queries: its Prometheus queries when it
// has some, else its SQL on ClickHouse.
func (o GrafanaOptions) targets(p Panel, format int, queryType string) (map[string]any, []any) {
	if len(p.Prom) == 0 {
		return o.datasource(), []any{map[string]any{
			"refId": "A", "datasource": o.datasource(), "editorType": "sql", "format": format, "queryType": queryType,
			"rawSql": p.GrafanaSQL(o.Database),
		}}
	}
	var ts []any
	for i, q := range p.Prom {
		t := map[string]any{"refId": string(rune('A' + i)), "datasource": o.prometheus(), "expr": q.Expr, "legendFormat": q.Legend,
			"range": true, "instant": false, "editorMode": "code"}
		ts = append(ts, t)
	}
	return o.prometheus(), ts
}

func (o GrafanaOptions) variable(name, label, sql string) map[string]any {
	return map[string]any{
		"name": name, "label": label, "type": "query", "datasource": o.datasource(),
		"definition": sql, "query": map[string]any{"rawSql": sql, "editorType": "sql", "format": grafanaFormatTable, "queryType": "table"},
		"refresh": 2, "includeAll": true, "allValue": allValue, "multi": false, "sort": 1, "hide": 0,
		"current": map[string]any{"selected": true, "text": "All", "value": "$__all"}, "options": []any{},
	}
}

// orgVariable is the org variable: a choice among every organization, or
// a hidden constant when the dashboards belong to one. The constant is not
// what keeps the others out (the datasource's ClickHouse user sees only
// its organization's rows); it spares a one-organization viewer a
// selector with a single entry.
func (o GrafanaOptions) orgVariable() map[string]any {
	if o.Organization == "" {
		return o.variable("org", "Organization", "SELECT DISTINCT organization_id FROM "+o.Database+".thread_state ORDER BY organization_id")
	}
	return map[string]any{
		"name": "org", "label": "Organization", "type": "constant", "query": o.Organization, "hide": 2,
		"current": map[string]any{"selected": true, "text": o.Organization, "value": o.Organization},
		"options": []any{map[string]any{"selected": true, "text": o.Organization, "value": o.Organization}},
	}
}

// GrafanaDashboard renders one dashboard as Grafana dashboard JSON.
func GrafanaDashboard(d Dashboard, o GrafanaOptions) ([]byte, error) {
	var panels []any
	x, y, rowH := 0, 0, 0
	for i, p := range d.Panels {
		p = p.withDefaults()
		if x+p.Width > 24 {
			x, y, rowH = 0, y+rowH, 0
		}
		gtype, format, queryType := "stat", grafanaFormatTable, "table"
		options := map[string]any{}
		custom := map[string]any{}
		switch p.Viz {
		case Stat:
			options = map[string]any{"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
				"colorMode": "value", "graphMode": "none", "justifyMode": "auto", "textMode": "value_and_name", "orientation": "auto"}
		case TimeSeries:
			gtype, format, queryType = "timeseries", grafanaFormatTimeSeries, "timeseries"
			options = map[string]any{"legend": map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true},
				"tooltip": map[string]any{"mode": "multi", "sort": "none"}}
			custom = map[string]any{"drawStyle": "line", "lineWidth": 2, "fillOpacity": 10, "showPoints": "never", "spanNulls": true}
		case Bar:
			gtype = "barchart"
			options = map[string]any{"orientation": "horizontal", "xField": "", "showValue": "always",
				"legend":  map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": false},
				"tooltip": map[string]any{"mode": "single", "sort": "none"}}
		case Table:
			gtype = "table"
			options = map[string]any{"showHeader": true, "cellHeight": "sm"}
		default:
			return nil, fmt.Errorf("dashboards: panel %s: unknown viz %q", p.ID, p.Viz)
		}
		defaults := map[string]any{"unit": grafanaUnit(p), "decimals": 2, "color": map[string]any{"mode": "palette-classic"}}
		if len(custom) > 0 {
			defaults["custom"] = custom
		}
		ds, targets := o.targets(p, format, queryType)
		panels = append(panels, map[string]any{
			"id": i + 1, "type": gtype, "title": p.Title, "description": p.Description,
			"gridPos":     map[string]any{"x": x, "y": y, "w": p.Width, "h": p.Height},
			"datasource":  ds,
			"targets":     targets,
			"fieldConfig": map[string]any{"defaults": defaults, "overrides": fieldOverrides(p)},
			"options":     options,
		})
		x += p.Width
		rowH = max(rowH, p.Height)
	}
	dash := map[string]any{
		"uid": d.UID, "title": d.Title, "description": d.Description, "tags": []string{"lcpipe", "livechat"},
		"timezone": "utc", "editable": true, "graphTooltip": 1, "refresh": "30s", "schemaVersion": 39, "version": 1,
		"time":       map[string]any{"from": "now-24h", "to": "now"},
		"timepicker": map[string]any{"refresh_intervals": []string{"10s", "30s", "1m", "5m", "15m"}},
		"templating": map[string]any{"list": []any{
			o.orgVariable(),
			o.variable("group", "Group", "SELECT arrayJoin(arraySort(arrayDistinct(groupArrayArrayMerge(group_ids)))) FROM "+o.Database+".thread_state WHERE hour >= now() - 31 * 86400"),
			o.variable("agent", "Agent", "SELECT arrayJoin(arraySort(arrayDistinct(groupArrayArrayMerge(agent_ids)))) FROM "+o.Database+".thread_state WHERE hour >= now() - 31 * 86400 AND (${org:sqlstring} = '"+allValue+"' OR organization_id = ${org:sqlstring})"),
		}},
		"annotations": map[string]any{"list": []any{}},
		"links":       []any{},
		"panels":      panels,
	}
	b, err := json.MarshalIndent(dash, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dashboards: grafana %s: %w", d.UID, err)
	}
	return append(b, '\n'), nil
}

// GrafanaFiles returns every generated Grafana file by its path under
// dashboards/grafana/: provisioning for the datasource and the dashboards
// folder, and one JSON per dashboard. docker-compose mounts provisioning/
// at /etc/grafana/provisioning and dashboards/ at DashboardsPath.
func GrafanaFiles(o GrafanaOptions) (map[string][]byte, error) {
	files := map[string][]byte{
		"provisioning/datasources/clickhouse.yaml": []byte(fmt.Sprintf(`# Generated by dashboards.GrafanaFiles (go test ./dashboards -run TestGrafanaFiles -update); do not edit.
# The official ClickHouse plugin reading the pipeline's tables as the
# read-only analyst user over the native protocol.
apiVersion: 1
datasources:
  - name: ClickHouse (lcpipe)
    type: %s
    uid: %s
    isDefault: true
    editable: false
    jsonData:
      host: %s
      port: %d
      protocol: native
      secure: false
      username: %s
      defaultDatabase: %s
    secureJsonData:
      password: %s
`, PluginID, o.DatasourceUID, o.Host, o.Port, o.User, o.Database, o.Password)),
		"provisioning/datasources/prometheus.yaml": []byte(fmt.Sprintf(`# Generated by dashboards.GrafanaFiles; do not edit.
# Prometheus scraping every lcpipe admin listener (/metrics): the Kafka lag
# panels of Pipeline health read it.
apiVersion: 1
datasources:
  - name: Prometheus (lcpipe)
    type: prometheus
    uid: %s
    url: %s
    access: proxy
    isDefault: false
    editable: false
    jsonData:
      httpMethod: POST
      exemplarTraceIdDestinations:
        - name: trace_id
          datasourceUid: %s
`, o.PrometheusUID, o.PrometheusURL, o.JaegerUID)),
		"provisioning/datasources/jaeger.yaml": []byte(fmt.Sprintf(`# Generated by dashboards.GrafanaFiles; do not edit.
# Jaeger: one trace per webhook, HTTP request to ClickHouse INSERT (the
# OpenTelemetry collector exports the processes' spans to it).
apiVersion: 1
datasources:
  - name: Jaeger (lcpipe traces)
    type: jaeger
    uid: %s
    url: %s
    access: proxy
    isDefault: false
    editable: false
`, o.JaegerUID, o.JaegerURL)),
		"provisioning/dashboards/lcpipe.yaml": []byte(providerYAML("dashboards.GrafanaFiles", "lcpipe", 0, o.DashboardsPath)),
	}
	for _, d := range All() {
		b, err := GrafanaDashboard(d, o)
		if err != nil {
			return nil, err
		}
		files[path.Join("dashboards", d.UID+".json")] = b
	}
	return files, nil
}

// providerYAML is a Grafana dashboards provider reading the JSON files under
// path into the "LiveChat (lcpipe)" folder, read-only; orgID 0 leaves the
// organization to Grafana (its main one). generator names what wrote it.
func providerYAML(generator, name string, orgID int, path string) string {
	org := ""
	if orgID != 0 {
		org = fmt.Sprintf("    orgId: %d\n", orgID)
	}
	return fmt.Sprintf(`# Generated by %s; do not edit.
apiVersion: 1
providers:
  - name: %s
%s    folder: LiveChat (lcpipe)
    type: file
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 30
    options:
      path: %s
`, generator, name, org, path)
}
