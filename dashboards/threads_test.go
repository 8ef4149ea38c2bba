package dashboards

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

// TestThreadsViewMatches keeps the `threads` view of migration 0100 and the
// panels' {threads} source (ThreadsSQL) one definition.
func TestThreadsViewMatches(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "schema", "migrations", "0100_thread_state.sql"))
	if err != nil {
		t.Fatal(err)
	}
	const marker = "CREATE VIEW IF NOT EXISTS {{.DB}}.threads {{.OnCluster}} AS\n"
	i := strings.Index(string(b), marker)
	if i < 0 {
		t.Fatal("no threads view in 0100")
	}
	view := strings.TrimSuffix(strings.TrimSpace(string(b)[i+len(marker):]), ";")
	if want := ThreadsSQL("{{.DB}}", ""); view != want {
		t.Errorf("threads view in 0100 differs from ThreadsSQL:\n--- migration\n%s\n--- ThreadsSQL\n%s", view, want)
	}
}
