package main

import (
	"context"
	"errors"
)

// runIngest is replaced by the ingest issue's implementation.
func runIngest(ctx context.Context, inv *invocation) error {
	if err := inv.parse(); err != nil {
		return err
	}
	return errors.New("ingest is being built (issue 3)")
}
