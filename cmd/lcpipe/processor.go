package main

import (
	"context"
	"errors"
)

// runProcessor is replaced by the processor issue's implementation.
func runProcessor(ctx context.Context, inv *invocation) error {
	if err := inv.parse(); err != nil {
		return err
	}
	return errors.New("processor is being built (issue 4)")
}
