package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
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
		"kafka":      {image: "apache/kafka", ports: []uint32{9094}},
		"clickhouse": {image: "clickhouse/clickhouse-server", ports: []uint32{9000, 8123}},
		"grafana":    {image: "grafana/grafana", ports: []uint32{3001}, deps: []string{"clickhouse"}},
		"migrate":    {command: "migrate", deps: []string{"clickhouse"}},
		"ingest":     {command: "ingest", ports: []uint32{8080}, deps: []string{"kafka"}},
		"processor":  {command: "processor", deps: []string{"kafka", "clickhouse", "migrate"}},
		"dashboards": {command: "dashboards", ports: []uint32{3000}, deps: []string{"clickhouse", "migrate"}},
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
			if name != "migrate" && s.HealthCheck == nil && w.command != "processor" && w.command != "dashboards" {
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
	var provisioning, dashboards string
	for _, v := range g.Volumes {
		switch v.Target {
		case "/etc/grafana/provisioning":
			provisioning = v.Source
		case "/var/lib/grafana/dashboards":
			dashboards = v.Source
		}
	}
	if provisioning == "" || dashboards == "" {
		t.Fatalf("grafana must mount provisioning and dashboards folders: %+v", g.Volumes)
	}
	for _, sub := range []string{"datasources", "dashboards"} {
		entries, err := os.ReadDir(filepath.Join(provisioning, sub))
		if err != nil || len(entries) == 0 {
			t.Errorf("grafana provisioning/%s is empty or missing: %v", sub, err)
		}
	}
	provider, _ := os.ReadFile(firstFile(t, filepath.Join(provisioning, "dashboards")))
	if !strings.Contains(string(provider), "/var/lib/grafana/dashboards") {
		t.Errorf("dashboard provider does not read /var/lib/grafana/dashboards:\n%s", provider)
	}
	jsons, _ := filepath.Glob(filepath.Join(dashboards, "*.json"))
	if len(jsons) < 4 {
		t.Errorf("want at least 4 Grafana dashboards in %s, found %d", dashboards, len(jsons))
	}
}

func firstFile(t *testing.T, dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return dir
	}
	return filepath.Join(dir, entries[0].Name())
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
