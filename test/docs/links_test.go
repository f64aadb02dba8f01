// Package docs checks the documentation as a reader follows it.
package docs

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// link is a Markdown inline link's target: [text](target).
var link = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestRelativeLinks: every relative link in README.md and docs/*.md names a
// file of the tree, and a heading of it when it has an #anchor (as GitHub
// makes them from the heading's text). Links in code blocks and code spans
// are text, not links.
func TestRelativeLinks(t *testing.T) {
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append([]string{"../../README.md"}, pages...)
	anchors := map[string]map[string]bool{}
	checked := 0
	for _, page := range pages {
		for _, l := range links(t, page) {
			target, anchor, _ := strings.Cut(l.target, "#")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			file := page
			if target != "" {
				file = filepath.Join(filepath.Dir(page), target)
			}
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s:%d: link %s: %v", rel(page), l.line, l.target, err)
				continue
			}
			if anchor == "" || !strings.HasSuffix(file, ".md") {
				continue
			}
			if anchors[file] == nil {
				anchors[file] = headings(t, file)
			}
			if !anchors[file][anchor] {
				t.Errorf("%s:%d: link %s: %s has no heading #%s", rel(page), l.line, l.target, rel(file), anchor)
			}
		}
	}
	if checked < len(pages) {
		t.Errorf("%d relative links in %d pages: the pages or the test are not what they were", checked, len(pages))
	}
}

type pageLink struct {
	target string
	line   int
}

// links lists a page's link targets outside code blocks and code spans.
func links(t *testing.T, page string) []pageLink {
	t.Helper()
	var out []pageLink
	eachLine(t, page, func(n int, text string) {
		for _, m := range link.FindAllStringSubmatch(stripCode(text), -1) {
			out = append(out, pageLink{m[1], n})
		}
	})
	return out
}

// headings lists the anchors of a page's headings, as GitHub makes them.
func headings(t *testing.T, page string) map[string]bool {
	t.Helper()
	seen := map[string]int{}
	out := map[string]bool{}
	eachLine(t, page, func(_ int, text string) {
		h, ok := strings.CutPrefix(text, "#")
		if !ok {
			return
		}
		slug := slugOf(strings.TrimLeft(h, "# "))
		if n := seen[slug]; n > 0 {
			out[slug+"-"+strconv.Itoa(n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	})
	return out
}

// slugOf is GitHub's anchor of a heading: lower case, letters, digits,
// spaces as hyphens, hyphens and underscores kept, the rest dropped.
func slugOf(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.ReplaceAll(h, "`", "")) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// eachLine calls f with each line of page outside fenced code blocks.
func eachLine(t *testing.T, page string, f func(n int, text string)) {
	t.Helper()
	file, err := os.Open(page)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	fenced := false
	for n := 1; sc.Scan(); n++ {
		if strings.HasPrefix(strings.TrimSpace(sc.Text()), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			f(n, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// stripCode drops a line's code spans: their text is no link.
func stripCode(s string) string {
	parts := strings.Split(s, "`")
	var b strings.Builder
	for i, p := range parts {
		if i%2 == 0 {
			b.WriteString(p)
		}
	}
	return b.String()
}

func rel(p string) string { return strings.TrimPrefix(p, "../../") }
