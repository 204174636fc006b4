//go:build unix

package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"strings"
)

// Chart geometry, in SVG user units.
const (
	chartWidth = 860
	labelRight = 150 // right edge of the system names
	barLeft    = 160
	barWidth   = 520
	rowHeight  = 22
	barHeight  = 15
	titleSpace = 38
	panelGap   = 18
	chartTop   = 44
)

const (
	colorProcpool = "#d9480f"
	colorOther    = "#8fa8c8"
	colorText     = "#222"
	colorMuted    = "#777"
	colorGrid     = "#ddd"
)

// writeChart writes the results as an SVG file: one panel per workload, a
// horizontal bar per system with its value, procpool highlighted, and a
// logarithmic axis where a panel's values span more than a decade and a half.
func writeChart(path string, r *report) error {
	var body strings.Builder
	y := chartTop
	for _, w := range workloads {
		var ms []measurement
		for _, s := range w.systems {
			for _, m := range r.ms {
				if m.workload == w.name && m.system == s {
					ms = append(ms, m)
				}
			}
		}
		if len(ms) == 0 {
			continue
		}
		y = panel(&body, w, ms, y)
	}
	height := y + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", chartWidth, height)
	title := "procpool benchmarks"
	if r.quick {
		title += " (quick size)"
	}
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="16" font-weight="bold" fill="%s">%s</text>`+"\n", colorText, esc(title))
	fmt.Fprintf(&b, `<text x="10" y="38" fill="%s">%s</text>`+"\n", colorMuted, esc(r.machine()))
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func esc(s string) string { return html.EscapeString(s) }

// panel draws one workload's panel with its top at y and returns the top of
// the next one.
func panel(b *strings.Builder, w *workload, ms []measurement, y int) int {
	lo, hi := math.Inf(1), 0.0
	for _, m := range ms {
		if m.err == "" && m.value > 0 {
			lo, hi = min(lo, m.value), max(hi, m.value)
		}
	}
	logScale := hi > 0 && hi/lo > 30
	better := "lower is better"
	if w.higher {
		better = "higher is better"
	}
	scale := "linear scale"
	if logScale {
		scale = "log scale"
	}
	y += titleSpace - 16
	fmt.Fprintf(b, `<text x="10" y="%d" font-weight="bold" fill="%s">%s</text>`, y, colorText, esc(w.name))
	fmt.Fprintf(b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", 10+8*len(w.name)+12, y, colorMuted,
		esc(fmt.Sprintf("%s (%s; %s; %s)", w.what, w.unit, better, scale)))
	y += 10

	// length maps a value to a bar length in [0, barWidth].
	var length func(v float64) float64
	if logScale {
		base := math.Pow(10, math.Floor(math.Log10(lo*0.5)))
		top := math.Pow(10, math.Ceil(math.Log10(hi)))
		span := math.Log10(top) - math.Log10(base)
		length = func(v float64) float64 { return barWidth * (math.Log10(v) - math.Log10(base)) / span }
		// Decade grid lines.
		for d := base; d <= top*1.0001; d *= 10 {
			x := float64(barLeft) + length(d)
			fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`, x, y, x, y+rowHeight*len(ms), colorGrid)
			fmt.Fprintf(b, `<text x="%.1f" y="%d" font-size="9" fill="%s" text-anchor="middle">%s</text>`+"\n",
				x, y+rowHeight*len(ms)+10, colorMuted, esc(fmtValue(d)))
		}
	} else {
		top := hi
		if top == 0 {
			top = 1
		}
		length = func(v float64) float64 { return barWidth * v / top }
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>`+"\n", barLeft, y, barLeft, y+rowHeight*len(ms), colorMuted)

	for i, m := range ms {
		top := y + i*rowHeight + (rowHeight-barHeight)/2
		mid := top + barHeight/2 + 4
		weight, color := "normal", colorOther
		if m.system == "procpool" {
			weight, color = "bold", colorProcpool
		}
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="end" font-weight="%s" fill="%s">%s</text>`,
			labelRight, mid, weight, colorText, esc(m.system))
		if m.err != "" || m.value <= 0 {
			why := "n/a"
			if m.err != "" {
				why += ": " + m.err
			}
			if len(why) > 90 {
				why = why[:87] + "..."
			}
			fmt.Fprintf(b, `<text x="%d" y="%d" fill="%s" font-style="italic">%s</text>`+"\n", barLeft+6, mid, colorMuted, esc(why))
			continue
		}
		l := max(1, length(m.value))
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, barLeft, top, l, barHeight, color)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" font-weight="%s" fill="%s">%s</text>`+"\n",
			float64(barLeft)+l+5, mid, weight, colorText, esc(fmtValue(m.value)+" "+m.unit))
	}
	y += rowHeight * len(ms)
	if logScale {
		y += 12
	}
	return y + panelGap
}
