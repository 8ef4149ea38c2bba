package mutation

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

func TestPack(t *testing.T) {
	many := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%05d", prefix, i)
		}
		return out
	}
	base := "organization_id = 'o'"
	tests := []struct {
		name    string
		terms   []Term
		budget  int
		clauses int // exact count, -1: more than one
	}{
		{"nothing", nil, 0, 0},
		{"empty list", []Term{{Column: "chat_id"}}, 0, 0},
		{"one id", []Term{{Column: "chat_id", IDs: []string{"C1"}}}, 0, 1},
		{"expression only", []Term{{Expr: "customer_id = 'x'"}}, 0, 1},
		{"two lists and an expression fit", []Term{{Column: "chat_id", IDs: many("c", 10)}, {Column: "thread_id", IDs: many("t", 10)}, {Expr: "customer_id = 'x'"}}, 0, 1},
		{"split by the budget", []Term{{Column: "chat_id", IDs: many("c", 3000)}, {Column: "thread_id", IDs: many("t", 3000)}, {Expr: "customer_id = 'x'"}}, 4096, -1},
		{"default budget splits a huge list", []Term{{Column: "thread_id", IDs: many("thread-id-of-some-length-", 20000)}}, 0, -1},
	}
	inRe := regexp.MustCompile(`(\w+) IN \(([^)]*)\)`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Pack(base, tt.terms, tt.budget)
			if tt.clauses >= 0 && len(got) != tt.clauses || tt.clauses < 0 && len(got) < 2 {
				t.Fatalf("%d clauses, want %d:\n%s", len(got), tt.clauses, strings.Join(got, "\n"))
			}
			budget := tt.budget
			if budget == 0 {
				budget = MaxStatementBytes
			}
			seen := map[string]int{}
			exprs := 0
			for _, c := range got {
				if len(c) > budget {
					t.Errorf("clause of %d bytes, budget %d", len(c), budget)
				}
				if !strings.HasPrefix(c, base+" AND (") || !strings.HasSuffix(c, ")") {
					t.Errorf("clause does not keep the base: %.80s", c)
				}
				for _, m := range inRe.FindAllStringSubmatch(c, -1) {
					for _, id := range strings.Split(m[2], ", ") {
						seen[m[1]+"="+strings.Trim(id, "'")]++
					}
				}
				exprs += strings.Count(c, "customer_id = 'x'")
			}
			want := 0
			for _, term := range tt.terms {
				if term.Expr != "" {
					want++
					continue
				}
				for _, id := range term.IDs {
					if seen[term.Column+"="+id] != 1 {
						t.Fatalf("%s %s in %d clauses, want 1", term.Column, id, seen[term.Column+"="+id])
					}
				}
			}
			if exprs != want {
				t.Errorf("expression in %d clauses, want %d", exprs, want)
			}
		})
	}
}

// TestDeleteWaits runs mutations on 18.16 and checks that Delete returns
// only when the rows are gone and that literals with quotes and
// backslashes match exactly.
func TestDeleteWaits(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := cfg.Database
	odd := `it's a \ "chat"`
	for _, q := range []string{
		"CREATE DATABASE " + db,
		"CREATE TABLE " + db + ".t (org String, chat_id String, at DateTime('UTC')) ENGINE = MergeTree PARTITION BY toYYYYMM(at) ORDER BY (org, chat_id)",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".t (org, chat_id, at)")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		chat := fmt.Sprintf("c%d", i%30)
		if i%30 == 7 {
			chat = odd
		}
		// Several months: several parts to rewrite.
		if err := b.Append("o", chat, time.Date(2025, time.Month(1+i%6), 1, 0, 0, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	count := func(where string) uint64 {
		t.Helper()
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".t WHERE "+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	o := Options{Database: db}

	wheres := Pack("org = 'o'", []Term{{Column: "chat_id", IDs: []string{"c2", "c3", odd}}}, 0)
	if err := Delete(ctx, conn, o, "t", wheres); err != nil {
		t.Fatal(err)
	}
	// No wait here: Delete returned, so the rows must already be gone.
	if n := count("chat_id IN ('c2', 'c3') OR chat_id = " + Quote(odd)); n != 0 {
		t.Fatalf("%d rows left right after Delete returned", n)
	}
	if n := count("chat_id = 'c4'"); n != 100 {
		t.Fatalf("c4: %d rows, want 100 (a chat not named was touched)", n)
	}
	// Nothing matching: still a mutation, still waited for.
	if err := Delete(ctx, conn, o, "t", []string{"chat_id = 'none'"}); err != nil {
		t.Fatal(err)
	}
	// Done mutations only.
	var pending uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", db).Scan(&pending); err != nil || pending != 0 {
		t.Fatalf("%d mutations pending after Delete (%v)", pending, err)
	}
}

// TestDeleteOnCurrentClickHouse runs the statements Delete sends (Pack's
// clauses, quoted literals) on the current engine.
func TestDeleteOnCurrentClickHouse(t *testing.T) {
	odd := `it's a \ "chat"`
	wheres := Pack("org = 'o'", []Term{{Column: "chat_id", IDs: []string{"c2", odd}}, {Expr: "position(body, 'c9') > 0"}}, 0)
	stmts := []testenv.ChdbStatement{
		{SQL: "CREATE DATABASE lc"},
		{SQL: "CREATE TABLE lc.t (org String, chat_id String, body String, at DateTime('UTC')) ENGINE = MergeTree PARTITION BY toYYYYMM(at) ORDER BY (org, chat_id)"},
		{SQL: "INSERT INTO lc.t SELECT 'o', arrayElement(['c1', 'c2', " + Quote(odd) + ", 'c3'], number % 4 + 1), if(number = 4, 'mentions c9', ''), toDateTime('2025-01-01 00:00:00', 'UTC') + number * 86400 * 20 FROM numbers(40)"},
	}
	for _, w := range wheres {
		// mutations_sync: the helper cannot poll; the statement is Delete's.
		stmts = append(stmts, testenv.ChdbStatement{SQL: "ALTER TABLE lc.t DELETE WHERE " + w + " SETTINGS mutations_sync = 2"})
	}
	stmts = append(stmts,
		testenv.ChdbStatement{SQL: "SELECT chat_id, count() FROM lc.t GROUP BY chat_id ORDER BY chat_id", Format: "TabSeparated"},
		testenv.ChdbStatement{SQL: "SELECT mutation_id, is_done, parts_to_do, latest_fail_reason FROM system.mutations WHERE database = 'lc' AND table = 't' AND has(['x'], mutation_id)"})
	res := testenv.RunChdb(t, true, stmts...)
	if len(res) != len(stmts) {
		t.Fatalf("chdb ran %d of %d statements; last: %+v", len(res), len(stmts), res[len(res)-1])
	}
	if got, want := res[len(res)-2].Output, "c1\t9\nc3\t10\n"; got != want {
		t.Fatalf("after the deletes:\n%s\nwant\n%s", got, want)
	}
}
