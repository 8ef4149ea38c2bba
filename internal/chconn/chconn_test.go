package chconn_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

func TestSecretDoesNotPrint(t *testing.T) {
	s := secret.Secret("hunter2")
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s", s, s), fmt.Sprintf("%+v", chconn.Config{Password: s})} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("secret printed: %s", out)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		db, cluster string
		ok          bool
	}{
		{"livechat", "", true},
		{"live-chat", "", false},
		{"1db", "", false},
		{"db", "my cluster", false},
		{"db", "prod_cluster", true},
	}
	for _, tt := range tests {
		c := chconn.DefaultConfig()
		c.Database, c.Cluster = tt.db, tt.cluster
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%q, %q) = %v, want ok=%v", tt.db, tt.cluster, err, tt.ok)
		}
	}
}

// TestLocalServerAnswers shows the ClickHouse the project starts answers on
// the native protocol.
func TestLocalServerAnswers(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, cfg)
	var v string
	if err := conn.QueryRow(context.Background(), "SELECT version()").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v == "" {
		t.Fatal("empty version")
	}
	t.Logf("ClickHouse %s", v)
}
