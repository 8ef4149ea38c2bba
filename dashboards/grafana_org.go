package dashboards

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/lcpipe/lcpipe/internal/analysts"
	"github.com/lcpipe/lcpipe/internal/secret"
)

// Grafana per organization: the shared files (GrafanaFiles) read every
// organization as the analyst user, for operators in Grafana's main
// organization. Each LiveChat organization whose people use Grafana gets
// a Grafana organization of its own holding a ClickHouse datasource that
// signs in as that organization's scoped user (package analysts: row
// policies, so it sees its own rows only) and the dashboards bound to it.

// GrafanaOrgOptions say where one organization's Grafana files point.
type GrafanaOrgOptions struct {
	// Host, Port and Database of ClickHouse as Grafana reaches it (native
	// protocol); Secure dials TLS (the secure native port, 9440 on
	// ClickHouse Cloud). Default: DefaultGrafanaOptions' (compose).
	Host     string
	Port     int
	Database string
	Secure   bool
	// Mount is the absolute path at which Grafana sees the directory the
	// files are written to (WriteGrafanaOrg's dir): the datasource reads
	// its password file and the provider its dashboards under it.
	Mount string
	// Password of the organization's scoped ClickHouse user. It goes to
	// the secrets file only; the datasource names that file ($__file{}).
	Password secret.Secret
}

// GrafanaFile is one generated file: Path is relative to the directory it
// is written to, and slash-separated.
type GrafanaFile struct {
	Path string
	Mode fs.FileMode
	Data []byte
}

// Modes of what WriteGrafanaOrg creates: the secret is readable by its
// owner only (Grafana must run as that owner: docker-compose.yml), the
// rest is public configuration.
const (
	grafanaSecretMode    fs.FileMode = 0o600
	grafanaSecretDirMode fs.FileMode = 0o700
	grafanaFileMode      fs.FileMode = 0o644
	grafanaDirMode       fs.FileMode = 0o755
)

// orgMarker starts the comment line of a datasource file naming its
// LiveChat organization, so WriteGrafanaOrg can tell which organization
// already holds a Grafana organization.
const orgMarker = "# lcpipe organization: "

// orgKey is a short, stable, file-name-safe key of an organization
// (organization ids are UUIDs, but nothing here relies on it).
func orgKey(org string) string {
	sum := sha256.Sum256([]byte(org))
	return hex.EncodeToString(sum[:6])
}

// GrafanaOrgDatasourceUID is the uid of the organization's ClickHouse
// datasource, which every panel of its dashboards names.
func GrafanaOrgDatasourceUID(org string) string { return "lcpipe-ch-" + orgKey(org) }

// The organization's files, relative to the directory they are written to.
func orgDatasourcePath(org string) string {
	return "provisioning/datasources/lcpipe-org-" + orgKey(org) + ".yaml"
}
func orgProviderPath(org string) string {
	return "provisioning/dashboards/lcpipe-org-" + orgKey(org) + ".yaml"
}
func orgDashboardsDir(org string) string { return "dashboards/org-" + orgKey(org) }
func orgSecretPath(org string) string    { return "secrets/" + analysts.UserName(org) }

// orgDatasourceName is the datasource's name inside its Grafana
// organization (one LiveChat organization per Grafana organization).
const orgDatasourceName = "ClickHouse (lcpipe)"

// organizationDashboards are the dashboards an organization gets: all but
// the pipeline's own health, which reads pipeline-wide tables and
// Prometheus (every organization's traffic, for operators only).
func organizationDashboards() []Dashboard {
	var out []Dashboard
	for _, d := range All() {
		if d.UID == pipeline().UID || hasProm(d) {
			continue
		}
		out = append(out, d)
	}
	return out
}

func hasProm(d Dashboard) bool {
	for _, p := range d.Panels {
		if len(p.Prom) > 0 {
			return true
		}
	}
	return false
}

// plainValue is what may be written unquoted in the YAML and in $__file{}.
var plainValue = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)

// validate checks what GrafanaOrgFiles writes into YAML without quoting
// and into paths.
func (o GrafanaOrgOptions) validate(org string, grafanaOrgID int) error {
	if err := analysts.ValidOrganization(org); err != nil {
		return err
	}
	// Grafana's organization 1 holds the shared datasource, whose analyst
	// user reads every organization: an organization's people never go there.
	if grafanaOrgID < 2 {
		return fmt.Errorf("dashboards: Grafana organization %d: want 2 or more (organization 1 holds the shared dashboards, which show every organization); create one in Grafana (Administration → Organizations) and give its id", grafanaOrgID)
	}
	if !path.IsAbs(o.Mount) {
		return fmt.Errorf("dashboards: Grafana mount %q is not an absolute path", o.Mount)
	}
	for _, f := range []struct{ name, v string }{{"mount", o.Mount}, {"host", o.Host}, {"database", o.Database}} {
		if !plainValue.MatchString(f.v) {
			return fmt.Errorf("dashboards: Grafana %s %q: want letters, digits and . _ - / only (it is written unquoted in provisioning files)", f.name, f.v)
		}
	}
	if o.Port <= 0 || o.Port > 65535 {
		return fmt.Errorf("dashboards: ClickHouse port %d for Grafana is out of range", o.Port)
	}
	if o.Password == "" {
		return errors.New("dashboards: the organization's ClickHouse password is empty")
	}
	// Grafana expands environment variables in what $__file{} read, and
	// trims it (analysts.NewPassword makes neither $ nor spaces).
	if pw := o.Password.Reveal(); strings.Contains(pw, "$") || strings.TrimSpace(pw) != pw {
		return errors.New("dashboards: the organization's ClickHouse password holds $ or surrounding spaces, which Grafana's $__file{} would change")
	}
	return nil
}

// GrafanaOrgFiles returns the Grafana files of one LiveChat organization
// shown in Grafana organization grafanaOrgID (2 or more, created in
// Grafana beforehand: provisioning does not create organizations):
//
//   - provisioning/datasources/lcpipe-org-<key>.yaml: the ClickHouse
//     datasource (uid GrafanaOrgDatasourceUID) signing in as
//     analysts.UserName(org), its password read from the secrets file with
//     Grafana's $__file{} (never written in the YAML);
//   - provisioning/dashboards/lcpipe-org-<key>.yaml: a file provider for
//     that Grafana organization reading dashboards/org-<key>/;
//   - dashboards/org-<key>/<uid>.json: every dashboard but Pipeline
//     health, each panel on that datasource, fixed to the organization;
//   - secrets/<user>: the password, mode 0600.
//
// It is pure: WriteGrafanaOrg writes the files.
func GrafanaOrgFiles(org string, grafanaOrgID int, o GrafanaOrgOptions) ([]GrafanaFile, error) {
	if err := o.validate(org, grafanaOrgID); err != nil {
		return nil, err
	}
	uid, user, key := GrafanaOrgDatasourceUID(org), analysts.UserName(org), orgKey(org)
	mounted := func(rel string) string { return path.Join(o.Mount, rel) }
	datasource := fmt.Sprintf(`# Generated by lcpipe analysts add --grafana-dir; do not edit (add again to rewrite it).
%s%s
# The official ClickHouse plugin reading the pipeline's tables as the
# organization's read-only ClickHouse user: its row policies show this
# organization's rows only. The password is read from a file only its
# owner may read.
apiVersion: 1
datasources:
  - name: %s
    orgId: %d
    type: %s
    uid: %s
    isDefault: false
    editable: false
    jsonData:
      host: %s
      port: %d
      protocol: native
      secure: %t
      username: %s
      defaultDatabase: %s
    secureJsonData:
      password: $__file{%s}
`, orgMarker, strconv.Quote(org), orgDatasourceName, grafanaOrgID, PluginID, uid, o.Host, o.Port, o.Secure, user, o.Database, mounted(orgSecretPath(org)))
	provider := providerYAML("lcpipe analysts add --grafana-dir", "lcpipe-org-"+key, grafanaOrgID, mounted(orgDashboardsDir(org)))
	files := []GrafanaFile{
		{Path: orgDatasourcePath(org), Mode: grafanaFileMode, Data: []byte(datasource)},
		{Path: orgProviderPath(org), Mode: grafanaFileMode, Data: []byte(provider)},
		{Path: orgSecretPath(org), Mode: grafanaSecretMode, Data: []byte(o.Password.Reveal())},
	}
	g := GrafanaOptions{DatasourceUID: uid, Host: o.Host, Port: o.Port, User: user, Database: o.Database, Organization: org}
	for _, d := range organizationDashboards() {
		b, err := GrafanaDashboard(d, g)
		if err != nil {
			return nil, err
		}
		files = append(files, GrafanaFile{Path: path.Join(orgDashboardsDir(org), d.UID+".json"), Mode: grafanaFileMode, Data: b})
	}
	return files, nil
}

// GrafanaOrgOwner returns the LiveChat organization whose datasource file
// in dir is provisioned into Grafana organization grafanaOrgID ("" when
// none): two LiveChat organizations in one Grafana organization would see
// each other's dashboards.
func GrafanaOrgOwner(dir string, grafanaOrgID int) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "provisioning", "datasources", "lcpipe-org-*.yaml"))
	if err != nil {
		return "", fmt.Errorf("dashboards: read %s: %w", dir, err)
	}
	want := fmt.Sprintf("orgId: %d", grafanaOrgID)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("dashboards: read %s: %w", f, err)
		}
		org, orgID := "", false
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if q, ok := strings.CutPrefix(line, orgMarker); ok {
				org, _ = strconv.Unquote(q)
			}
			if line == want {
				orgID = true
			}
		}
		// A removed organization's file names no organization (it only
		// deletes its datasource).
		if org != "" && orgID {
			return org, nil
		}
	}
	return "", nil
}

// WriteGrafanaOrg writes GrafanaOrgFiles under dir, creating the folders
// (secrets/ mode 0700), replacing the organization's previous files and
// dashboards. It refuses a Grafana organization that another LiveChat
// organization's files already use. Grafana reads new datasources at
// start (or POST /api/admin/provisioning/datasources/reload).
func WriteGrafanaOrg(dir, org string, grafanaOrgID int, o GrafanaOrgOptions) error {
	files, err := GrafanaOrgFiles(org, grafanaOrgID, o)
	if err != nil {
		return err
	}
	owner, err := GrafanaOrgOwner(dir, grafanaOrgID)
	if err != nil {
		return err
	}
	if owner != "" && owner != org {
		return fmt.Errorf("dashboards: Grafana organization %d already shows LiveChat organization %s (%s): give each LiveChat organization a Grafana organization of its own",
			grafanaOrgID, owner, filepath.Join(dir, orgDatasourcePath(owner)))
	}
	// Dashboards dropped from the definitions must not linger.
	if err := os.RemoveAll(filepath.Join(dir, filepath.FromSlash(orgDashboardsDir(org)))); err != nil {
		return fmt.Errorf("dashboards: grafana files of %s: %w", org, err)
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		dirMode := grafanaDirMode
		if f.Mode == grafanaSecretMode {
			dirMode = grafanaSecretDirMode
		}
		if err := os.MkdirAll(filepath.Dir(p), dirMode); err != nil {
			return fmt.Errorf("dashboards: grafana files of %s: %w", org, err)
		}
		if err := writeFileMode(p, f.Data, f.Mode); err != nil {
			return fmt.Errorf("dashboards: grafana files of %s: %w", org, err)
		}
	}
	return nil
}

// writeFileMode writes a file through a temporary one renamed over it, so
// Grafana never reads half a file, with exactly mode (whatever the umask
// or the mode an older file had). The secret is never readable by others,
// not even for a moment: the temporary file is created with mode.
func writeFileMode(p string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// RemoveGrafanaOrg removes the organization's files from dir: its secret,
// dashboards and dashboard provider. Its datasource file is replaced by
// one that deletes the datasource: Grafana keeps a provisioned datasource
// whose file is gone. Other organizations' files are left alone; removing
// an organization that has no files is not an error.
func RemoveGrafanaOrg(dir, org string, grafanaOrgID int) error {
	if err := analysts.ValidOrganization(org); err != nil {
		return err
	}
	if grafanaOrgID < 2 {
		return fmt.Errorf("dashboards: Grafana organization %d: want 2 or more", grafanaOrgID)
	}
	for _, rel := range []string{orgSecretPath(org), orgProviderPath(org), orgDashboardsDir(org)} {
		if err := os.RemoveAll(filepath.Join(dir, filepath.FromSlash(rel))); err != nil {
			return fmt.Errorf("dashboards: remove grafana files of %s: %w", org, err)
		}
	}
	ds := filepath.Join(dir, filepath.FromSlash(orgDatasourcePath(org)))
	if _, err := os.Stat(ds); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	tombstone := fmt.Sprintf(`# Generated by lcpipe analysts remove --grafana-dir: the organization's
# datasource is deleted from Grafana organization %d at Grafana's next start.
apiVersion: 1
deleteDatasources:
  - name: %s
    orgId: %d
`, grafanaOrgID, orgDatasourceName, grafanaOrgID)
	if err := writeFileMode(ds, []byte(tombstone), grafanaFileMode); err != nil {
		return fmt.Errorf("dashboards: remove grafana files of %s: %w", org, err)
	}
	return nil
}
