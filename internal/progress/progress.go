// Package progress draws the progress bar of long operator commands
// (replay, audit, dlq and quarantine redrive) on stderr: count, rate and
// ETA, from github.com/schollz/progressbar. Tools take a *Bar and call Add;
// a nil *Bar draws nothing, so library code and tests need no special case.
package progress

import (
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Bar is one progress bar; nil is a valid, silent bar.
type Bar struct{ b *progressbar.ProgressBar }

// New draws a bar of total units (records) on w, described by what. A
// total <= 0 or a nil w gives a nil (silent) bar.
func New(w io.Writer, total int64, what string) *Bar {
	if w == nil || total <= 0 {
		return nil
	}
	b := &Bar{b: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rec"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(250*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(w, "\n") }),
	)}
	_ = b.b.RenderBlank() // starts the clock the rate and ETA are measured from
	return b
}

// Add advances the bar by n.
func (b *Bar) Add(n int) {
	if b != nil && n > 0 {
		_ = b.b.Add(n)
	}
}

// Finish completes the bar (also when the work ended early).
func (b *Bar) Finish() {
	if b != nil {
		_ = b.b.Finish()
	}
}
