package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

// loadCompose parses docker-compose.yml with the compose-spec reference
// parser (the one docker compose uses), with interpolation and validation,
// and the variables `make compose-env` writes to .env (generated afresh
// into a temporary file: the file is valid only if the generator provides
// every variable it requires).
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	return loadComposeFile(t, "docker-compose.yml", composeEnv(t), true)
}

// composeEnv runs scripts/compose-env.sh into a temporary .env and returns
// its path.
func composeEnv(t *testing.T) string {
	t.Helper()
	root, _ := filepath.Abs("../..")
	env := filepath.Join(t.TempDir(), ".env")
	if out, err := exec.Command("bash", filepath.Join(root, "scripts", "compose-env.sh"), env).CombinedOutput(); err != nil {
		t.Fatalf("compose-env.sh: %v\n%s", err, out)
	}
	return env
}

// loadComposeFile loads a compose file of the repository (or an absolute
// path) with the variables of envFile, interpolated or not.
func loadComposeFile(t *testing.T, file, envFile string, interpolate bool) *types.Project {
	t.Helper()
	root, _ := filepath.Abs("../..")
	if !filepath.IsAbs(file) {
		file = filepath.Join(root, file)
	}
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(root), cli.WithName("lcpipe"), cli.WithEnv([]string{}),
		cli.WithEnvFiles(envFile), cli.WithDotEnv, cli.WithInterpolation(interpolate))
	if err != nil {
		t.Fatal(err)
	}
	p, err := cli.ProjectFromOptions(context.Background(), opts)
	if err != nil {
		t.Fatalf("%s does not load: %v", file, err)
	}
	return p
}

// envSpec runs a subcommand with --help and returns the environment
// variables it reads, so compose can only set variables the code knows.
func envSpec(t *testing.T, name string) []string {
	t.Helper()
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		inv := newInvocation(c.name, c.summary, []string{"--help"}, io.Discard, slog.New(slog.DiscardHandler))
		inv.lookup = func(string) (string, bool) { return "", false }
		_ = c.run(context.Background(), inv)
		var out []string
		for _, v := range inv.vars {
			out = append(out, v.Name)
		}
		return out
	}
	t.Fatalf("no command %q", name)
	return nil
}

func TestComposeFile(t *testing.T) {
	p := loadCompose(t)
	want := map[string]struct {
		image   string
		command string
		ports   []uint32
		deps    []string
	}{
		"kafka":          {image: "apache/kafka", ports: []uint32{9094}},
		"clickhouse":     {image: "clickhouse/clickhouse-server", ports: []uint32{9000, 8123}},
		"grafana":        {image: "grafana/grafana", ports: []uint32{3001}, deps: []string{"clickhouse"}},
		"migrate":        {command: "migrate", deps: []string{"clickhouse"}},
		"ingest":         {command: "ingest", ports: []uint32{8080}, deps: []string{"kafka"}},
		"processor":      {command: "processor", deps: []string{"kafka", "clickhouse", "migrate"}},
		"dashboards":     {command: "dashboards", ports: []uint32{3000}, deps: []string{"clickhouse", "migrate"}},
		"otel-collector": {image: "otel/opentelemetry-collector-contrib", deps: []string{"jaeger"}},
		"jaeger":         {image: "jaegertracing/all-in-one", ports: []uint32{16686}},
		"prometheus":     {image: "prom/prometheus", ports: []uint32{9090}},
	}
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			s, ok := p.Services[name]
			if !ok {
				t.Fatalf("service %s missing", name)
			}
			if w.image != "" && !strings.HasPrefix(s.Image, w.image+":") {
				t.Errorf("image %q, want %s:<tag>", s.Image, w.image)
			}
			if w.command != "" {
				if s.Build == nil || s.Build.Dockerfile != "cmd/lcpipe/Dockerfile" {
					t.Errorf("not built from cmd/lcpipe/Dockerfile: %+v", s.Build)
				}
				if len(s.Command) != 1 || s.Command[0] != w.command {
					t.Errorf("command %v, want [%s]", s.Command, w.command)
				}
				known := envSpec(t, w.command)
				for k := range s.Environment {
					if k == "LOG_FORMAT" || k == "LOG_LEVEL" {
						continue
					}
					if !slices.Contains(known, k) {
						t.Errorf("environment %s is not read by `lcpipe %s` (it reads %v)", k, w.command, known)
					}
				}
			}
			for _, port := range w.ports {
				found := false
				for _, pc := range s.Ports {
					if pc.Published == itoa(port) {
						found = true
					}
				}
				if !found {
					t.Errorf("port %d not published: %+v", port, s.Ports)
				}
			}
			for _, d := range w.deps {
				if _, ok := s.DependsOn[d]; !ok {
					t.Errorf("does not depend on %s", d)
				}
			}
			// The collector and Jaeger images have no shell or HTTP client
			// to probe with; what depends on them waits for their start.
			if name != "migrate" && name != "otel-collector" && name != "jaeger" && s.HealthCheck == nil {
				t.Errorf("no healthcheck")
			}
		})
	}
	if c := p.Services["processor"].DependsOn["migrate"].Condition; c != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("processor waits for migrate with %q, want completed successfully", c)
	}
	for _, n := range []string{"processor", "migrate"} {
		if p.Services[n].DependsOn["clickhouse"].Condition != types.ServiceConditionHealthy {
			t.Errorf("%s does not wait for a healthy clickhouse", n)
		}
	}
	// ClickHouse must be current (24.x or newer) in compose.
	tag := strings.SplitN(p.Services["clickhouse"].Image, ":", 2)[1]
	if tag < "24" {
		t.Errorf("clickhouse image tag %s is older than 24.x", tag)
	}
}

// TestComposeMountsExist checks every bind mount points at a file or folder
// of this repository, and Grafana's provisioning finds the dashboards where
// compose mounts them.
func TestComposeMountsExist(t *testing.T) {
	p := loadCompose(t)
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s, which does not exist: %v", name, v.Source, err)
			}
		}
	}
	g := p.Services["grafana"]
	provisioning, _ := hostPath(g, grafanaProvisioning(g))
	dashboards, _ := hostPath(g, "/var/lib/grafana/dashboards")
	if provisioning == "" || dashboards == "" {
		t.Fatalf("grafana must mount provisioning and dashboards folders: %+v", g.Volumes)
	}
	for _, sub := range []string{"datasources", "dashboards"} {
		entries, err := os.ReadDir(filepath.Join(provisioning, sub))
		if err != nil || len(entries) == 0 {
			t.Errorf("grafana provisioning/%s is empty or missing: %v", sub, err)
		}
	}
	// The shared provider (per-organization ones sit beside it).
	provider, _ := os.ReadFile(filepath.Join(provisioning, "dashboards", "lcpipe.yaml"))
	if !strings.Contains(string(provider), "/var/lib/grafana/dashboards") {
		t.Errorf("dashboard provider does not read /var/lib/grafana/dashboards:\n%s", provider)
	}
	jsons, _ := filepath.Glob(filepath.Join(dashboards, "*.json"))
	if len(jsons) < 4 {
		t.Errorf("want at least 4 Grafana dashboards in %s, found %d", dashboards, len(jsons))
	}
}

// grafanaProvisioning is where the service's Grafana reads provisioning.
func grafanaProvisioning(s types.ServiceConfig) string {
	if v := s.Environment["GF_PATHS_PROVISIONING"]; v != nil {
		return *v
	}
	return "/etc/grafana/provisioning"
}

// hostPath is the host path a bind mount of s shows at the container path
// p (the mount with the longest target holding p).
func hostPath(s types.ServiceConfig, p string) (string, bool) {
	best, out := -1, ""
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		rel, err := filepath.Rel(v.Target, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || len(v.Target) <= best {
			continue
		}
		best, out = len(v.Target), filepath.Join(v.Source, rel)
	}
	return out, best >= 0
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// TestComposeObservability checks the observability wiring of compose
// statically: every lcpipe admin listener (ADMIN_ADDR) is a Prometheus
// scrape target, spans go to the collector on a port its OTLP receiver
// listens on, the collector exports traces to Jaeger, Grafana's Prometheus
// and Jaeger datasources point at those services, and the canary is on.
func TestComposeObservability(t *testing.T) {
	p := loadCompose(t)
	root, _ := filepath.Abs("../..")
	readYAML := func(path string, v any) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML("scripts/prometheus/compose/prometheus.yml", &prom)
	targets := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = true
			}
		}
	}
	var collector struct {
		Receivers struct {
			OTLP struct {
				Protocols map[string]struct {
					Endpoint string `yaml:"endpoint"`
				} `yaml:"protocols"`
			} `yaml:"otlp"`
		} `yaml:"receivers"`
		Exporters map[string]struct {
			Endpoint string `yaml:"endpoint"`
		} `yaml:"exporters"`
		Service struct {
			Pipelines map[string]struct {
				Receivers []string `yaml:"receivers"`
				Exporters []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	readYAML("scripts/otel-collector/compose/config.yaml", &collector)
	receiverPort := map[string]string{}
	for proto, r := range collector.Receivers.OTLP.Protocols {
		_, port, _ := net.SplitHostPort(r.Endpoint)
		receiverPort[proto] = port
	}

	for _, name := range []string{"ingest", "processor", "dashboards"} {
		t.Run(name, func(t *testing.T) {
			env := p.Services[name].Environment
			get := func(k string) string {
				if v := env[k]; v != nil {
					return *v
				}
				return ""
			}
			_, port, err := net.SplitHostPort(get("ADMIN_ADDR"))
			if err != nil || port == "" {
				t.Fatalf("ADMIN_ADDR %q: want host:port binding the container's interfaces", get("ADMIN_ADDR"))
			}
			if !targets[name+":"+port] {
				t.Errorf("Prometheus does not scrape %s:%s (targets %v)", name, port, targets)
			}
			u, err := url.Parse(get("OTEL_EXPORTER_OTLP_ENDPOINT"))
			if err != nil || u.Hostname() != "otel-collector" {
				t.Fatalf("OTEL_EXPORTER_OTLP_ENDPOINT %q does not name the collector", get("OTEL_EXPORTER_OTLP_ENDPOINT"))
			}
			proto := map[string]string{"http/protobuf": "http", "grpc": "grpc"}[get("OTEL_EXPORTER_OTLP_PROTOCOL")]
			if proto == "" || receiverPort[proto] != u.Port() {
				t.Errorf("spans go to port %s over %q; the collector's OTLP receivers: %v", u.Port(), get("OTEL_EXPORTER_OTLP_PROTOCOL"), receiverPort)
			}
			if get("OTEL_METRICS_EXPORTER") != "prometheus" {
				t.Errorf("OTEL_METRICS_EXPORTER %q: metrics are scraped, not pushed (no duplicates)", get("OTEL_METRICS_EXPORTER"))
			}
			hc := p.Services[name].HealthCheck
			if hc == nil || !strings.Contains(strings.Join(hc.Test, " "), ":"+port+"/readyz") {
				t.Errorf("healthcheck %v does not ask the admin listener's /readyz", hc)
			}
		})
	}
	if d, err := time.ParseDuration(*p.Services["ingest"].Environment["CANARY_INTERVAL"]); err != nil || d <= 0 {
		t.Errorf("ingest CANARY_INTERVAL: %v %v (the canary is on in compose)", d, err)
	}
	traces := collector.Service.Pipelines["traces"]
	if len(traces.Exporters) == 0 || !slices.Contains(traces.Receivers, "otlp") {
		t.Fatalf("collector traces pipeline %+v", traces)
	}
	if host, _, _ := net.SplitHostPort(collector.Exporters[traces.Exporters[0]].Endpoint); host != "jaeger" {
		t.Errorf("collector exports traces to %q, not Jaeger", collector.Exporters[traces.Exporters[0]].Endpoint)
	}
	if v := p.Services["jaeger"].Environment["COLLECTOR_OTLP_ENABLED"]; v == nil || *v != "true" {
		t.Errorf("Jaeger does not accept OTLP")
	}
	for file, svc := range map[string]string{"prometheus.yaml": "prometheus", "jaeger.yaml": "jaeger"} {
		var ds struct {
			Datasources []struct {
				Type, UID, URL string
			} `yaml:"datasources"`
		}
		readYAML("dashboards/grafana/provisioning/datasources/"+file, &ds)
		if len(ds.Datasources) != 1 {
			t.Fatalf("%s: %d datasources", file, len(ds.Datasources))
		}
		u, err := url.Parse(ds.Datasources[0].URL)
		if err != nil || u.Hostname() != svc {
			t.Errorf("Grafana datasource %s points at %q, not the %s service", file, ds.Datasources[0].URL, svc)
		}
		if _, ok := p.Services["grafana"].DependsOn[svc]; !ok {
			t.Errorf("grafana does not depend on %s", svc)
		}
	}
}
