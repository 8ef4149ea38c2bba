package main

import (
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
)

// webhookService is the one service whose port faces the internet.
const webhookService = "ingest"

// publicPorts lists what p exposes beyond the host's loopback, which only
// the webhook endpoint (ingest's INGEST_ADDR port) may: a port published
// without a loopback host address listens on every interface, and a
// service on the host's network listens wherever it binds. It holds for
// every service, including ones added later.
func publicPorts(p *types.Project) []string {
	var out []string
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if s.NetworkMode == "host" {
			out = append(out, name+": network_mode host")
		}
		for _, pc := range s.Ports {
			if isLoopback(pc.HostIP) {
				continue
			}
			if name == webhookService && pc.Target == webhookPort(s) {
				continue
			}
			host := pc.HostIP
			if host == "" {
				host = "*"
			}
			out = append(out, fmt.Sprintf("%s: %s:%s->%d", name, host, pc.Published, pc.Target))
		}
	}
	sort.Strings(out)
	return out
}

func isLoopback(host string) bool {
	host = strings.Trim(host, "[]")
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// webhookPort is the port of the service's INGEST_ADDR (0 when unset).
func webhookPort(s types.ServiceConfig) uint32 {
	addr := ingestDefaultAddr
	if v := s.Environment["INGEST_ADDR"]; v != nil {
		addr = *v
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	var n uint32
	fmt.Sscan(port, &n)
	return n
}

const ingestDefaultAddr = ":8080"

var (
	// credentialName is how a variable holding a credential is named.
	credentialName = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_?KEY|_KEY$)`)
	// fromEnv is a value taken from the environment: ${VAR}, ${VAR:?msg},
	// ${VAR?msg}, or optional with an empty default (${VAR:-}, ${VAR-}).
	fromEnv = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?\?)[^}]*|(:?-)([^}]*))?\}$`)
	// Credentials written in mounted configuration files.
	xmlPassword  = regexp.MustCompile(`<(password(?:_sha256_hex|_double_sha1_hex)?)(\s[^>]*)?>([^<]*)</password`)
	xmlFromEnv   = regexp.MustCompile(`<password(?:_sha256_hex|_double_sha1_hex)?\s[^>]*from_env=`)
	yamlPassword = regexp.MustCompile(`(?im)^\s*[a-z_]*(password|secret|token)[a-z_]*\s*:\s*(\S.*)$`)
	jsonPassword = regexp.MustCompile(`(?i)"[a-z_]*(password|secret|token)[a-z_]*"\s*:\s*"([^"]+)"`)
)

// defaultPasswords lists every credential in raw (the compose file read
// without interpolation) that is not taken from the environment: a literal
// value, a non-empty default (${VAR:-admin}), or a variable `make
// compose-env` does not generate (it would be empty: no password). An
// optional secret the operator supplies (${VAR:-}) is allowed. It also
// reads the repository files the services mount, where a password must
// come from the environment too (ClickHouse's from_env, Grafana's $VAR).
func defaultPasswords(t *testing.T, raw *types.Project, generated map[string]string) []string {
	t.Helper()
	var out []string
	for _, name := range raw.ServiceNames() {
		s := raw.Services[name]
		for k, v := range s.Environment {
			if !credentialName.MatchString(k) {
				continue
			}
			val := ""
			if v != nil {
				val = *v
			}
			m := fromEnv.FindStringSubmatch(val)
			switch {
			case m == nil:
				out = append(out, fmt.Sprintf("%s: %s is written in the file", name, k))
			case m[3] != "" && m[4] != "":
				out = append(out, fmt.Sprintf("%s: %s has a default value (%s)", name, k, val))
			case m[3] == "" && generated[m[1]] == "":
				out = append(out, fmt.Sprintf("%s: %s comes from %s, which make compose-env does not generate", name, k, m[1]))
			}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				out = append(out, mountedPasswords(t, name, v.Source)...)
			}
		}
	}
	sort.Strings(out)
	return out
}

// mountedPasswords reads a mounted file, or every file of a mounted
// folder, for credentials written in it.
func mountedPasswords(t *testing.T, service, src string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		text := string(b)
		found := func(what string) { out = append(out, fmt.Sprintf("%s: %s in %s", service, what, path)) }
		switch strings.ToLower(filepath.Ext(path)) {
		case ".xml":
			for _, m := range xmlPassword.FindAllStringSubmatch(text, -1) {
				if strings.TrimSpace(m[3]) != "" && !xmlFromEnv.MatchString(m[0]) {
					found("<" + m[1] + "> written")
				}
			}
		case ".yaml", ".yml":
			for _, m := range yamlPassword.FindAllStringSubmatch(text, -1) {
				if v := strings.Trim(strings.TrimSpace(m[2]), `"'`); v != "" && !strings.HasPrefix(v, "$") {
					found(strings.TrimSpace(strings.SplitN(m[0], ":", 2)[0]) + " written")
				}
			}
		case ".json":
			for _, m := range jsonPassword.FindAllStringSubmatch(text, -1) {
				if !strings.HasPrefix(m[2], "$") {
					found(m[1] + " written")
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", src, err)
	}
	return out
}

// TestComposeExposesOnlyWebhooks: docker-compose.yml publishes nothing but
// ingest's webhook port beyond the host's loopback, and holds no default
// password: every credential comes from .env, which `make compose-env`
// fills with random values.
func TestComposeExposesOnlyWebhooks(t *testing.T) {
	envFile := composeEnv(t)
	generated, err := dotenv.Read(envFile)
	if err != nil {
		t.Fatal(err)
	}
	p := loadComposeFile(t, "docker-compose.yml", envFile, true)
	if got := publicPorts(p); len(got) > 0 {
		t.Errorf("published beyond loopback (bind to 127.0.0.1 or leave unpublished):\n  %s", strings.Join(got, "\n  "))
	}
	if s, ok := p.Services[webhookService]; !ok || !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool { return pc.Target == webhookPort(s) }) {
		t.Errorf("%s does not publish its webhook port", webhookService)
	}
	raw := loadComposeFile(t, "docker-compose.yml", envFile, false)
	if got := defaultPasswords(t, raw, generated); len(got) > 0 {
		t.Errorf("default passwords:\n  %s", strings.Join(got, "\n  "))
	}
	// The generated values are random and long, and running the generator
	// again keeps them (Grafana keeps its admin password in its volume).
	again := composeEnv(t)
	other, _ := dotenv.Read(again)
	for k, v := range generated {
		if !strings.HasSuffix(k, "PASSWORD") {
			continue
		}
		if len(v) < 32 || other[k] == v {
			t.Errorf("%s=%q: want 32 random hex characters, different in every fresh .env", k, v)
		}
	}
	if out, err := exec.Command("bash", "../../scripts/compose-env.sh", envFile).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if kept, _ := dotenv.Read(envFile); !maps.Equal(kept, generated) {
		t.Errorf("compose-env.sh changed an existing .env:\n%v\n%v", generated, kept)
	}
}

// TestComposeChecksCatchExposure feeds the two checks a compose file with
// every kind of exposure (including services docker-compose.yml does not
// have yet) and checks each is reported, and nothing else.
func TestComposeChecksCatchExposure(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.xml")
	if err := os.WriteFile(users, []byte(`<clickhouse><users><u><password>changeme</password></u>`+
		`<v><password from_env="V_PASSWORD"/></v></users></clickhouse>`), 0o600); err != nil {
		t.Fatal(err)
	}
	datasource := filepath.Join(dir, "ds.yaml")
	if err := os.WriteFile(datasource, []byte("secureJsonData:\n  password: admin\n  token: ${TOKEN}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "compose.yml")
	compose := `services:
  ingest:
    image: lcpipe
    environment:
      INGEST_ADDR: ":8080"
      LIVECHAT_CLIENT_SECRET: ${LIVECHAT_CLIENT_SECRET:-}
    ports: ["8080:8080", "9480:9480"]
  prometheus:
    image: prom/prometheus
    ports: ["9090:9090"]
  jaeger:
    image: jaegertracing/all-in-one
    ports: ["0.0.0.0:16686:16686", "127.0.0.1:4317:4317", "[::1]:4318:4318"]
  collector:
    image: otel/opentelemetry-collector
    network_mode: host
  db:
    image: postgres
    environment:
      POSTGRES_PASSWORD: postgres
      REDIS_PASSWORD: ${REDIS_PASSWORD:-changeme}
      API_TOKEN: ${NOT_GENERATED}
      OK_PASSWORD: ${GENERATED_PASSWORD:?run make compose-env}
    volumes:
      - ` + users + `:/etc/users.xml:ro
      - ` + datasource + `:/etc/ds.yaml:ro
`
	if err := os.WriteFile(file, []byte(compose), 0o600); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(dir, ".env")
	if err := os.WriteFile(envFile, []byte("GENERATED_PASSWORD=x\nNOT_GENERATED=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := loadComposeFile(t, file, envFile, true)
	wantPorts := []string{
		"collector: network_mode host",
		"ingest: *:9480->9480",
		"jaeger: 0.0.0.0:16686->16686",
		"prometheus: *:9090->9090",
	}
	if got := publicPorts(p); !slices.Equal(got, wantPorts) {
		t.Errorf("publicPorts:\n got %q\nwant %q", got, wantPorts)
	}
	wantPasswords := []string{
		"db: <password> written in " + users,
		"db: API_TOKEN comes from NOT_GENERATED, which make compose-env does not generate",
		"db: POSTGRES_PASSWORD is written in the file",
		"db: REDIS_PASSWORD has a default value (${REDIS_PASSWORD:-changeme})",
		"db: password written in " + datasource,
	}
	raw := loadComposeFile(t, file, envFile, false)
	if got := defaultPasswords(t, raw, map[string]string{"GENERATED_PASSWORD": "x"}); !slices.Equal(got, wantPasswords) {
		t.Errorf("defaultPasswords:\n got %q\nwant %q", got, wantPasswords)
	}
}
