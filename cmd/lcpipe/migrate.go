package main

import (
	"context"
	"fmt"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/schema"
)

func runMigrate(ctx context.Context, inv *invocation) error {
	cfg := inv.ClickHouse()
	printSQL := inv.fs.Bool("print", false, "print the rendered SQL of every migration instead of applying")
	status := inv.fs.Bool("status", false, "list applied migrations and exit")
	if err := inv.parse(); err != nil {
		return err
	}
	opts := schema.Options{Database: cfg.Database, Cluster: cfg.Cluster}
	if *printSQL {
		ms, err := schema.Migrations()
		if err != nil {
			return err
		}
		for _, m := range ms {
			stmts, err := m.Statements(opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(inv.stdout, "-- %s (sha256 %s)\n", m.Name, m.Checksum)
			for _, s := range stmts {
				fmt.Fprintf(inv.stdout, "%s;\n\n", s)
			}
		}
		return nil
	}
	conn, err := chconn.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if *status {
		applied, err := schema.AppliedMigrations(ctx, conn, cfg.Database)
		if err != nil {
			return err
		}
		for _, a := range applied {
			fmt.Fprintf(inv.stdout, "%04d  %-40s  %s  %s\n", a.Version, a.Name, a.Checksum[:12], a.AppliedAt.Format("2006-01-02 15:04:05"))
		}
		return nil
	}
	res, err := schema.Migrate(ctx, conn, opts, inv.log)
	if err != nil {
		return err
	}
	inv.log.Info("schema up to date", "database", cfg.Database, "version", res.Current, "applied_now", len(res.Applied))
	return nil
}
