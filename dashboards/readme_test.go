package dashboards

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

var (
	sqlBlockRe = regexp.MustCompile("(?s)```sql\n(.*?)```")
	tableRe    = regexp.MustCompile(`\b(FROM|JOIN)\s+(events|pipeline_batches|thread_state|threads_settled|threads|messages|agent_status|webhook_minutes|webhook_hours|rollup_days|chat_ratings|chat_threads)\b`)
)

// TestSchemaReadmeQueries runs every example query of schema/README.md as
// the read-only analyst user on the 18.16 server (tables qualified with the
// test database), so the documentation stays true.
func TestSchemaReadmeQueries(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "schema", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	db, _ := recentData(t)
	conn := analystConn(t)
	n := 0
	for _, block := range sqlBlockRe.FindAllStringSubmatch(string(b), -1) {
		for _, stmt := range strings.Split(block[1], ";") {
			var lines []string
			for _, l := range strings.Split(stmt, "\n") {
				if !strings.HasPrefix(strings.TrimSpace(l), "--") {
					lines = append(lines, l)
				}
			}
			sql := strings.TrimSpace(strings.Join(lines, "\n"))
			if sql == "" {
				continue
			}
			sql = tableRe.ReplaceAllString(sql, "$1 "+db+".$2")
			if _, err := RunSQL(context.Background(), conn, "readme", sql); err != nil {
				t.Errorf("README query fails: %v\n%s", err, sql)
			}
			n++
		}
	}
	if n < 8 {
		t.Errorf("only %d example queries found", n)
	}
}
