"""Small SVG figures with no plotting library: heat maps, line plots, bars.

Every function returns an SVG fragment (a <g> element) placed at (x, y); `figure` wraps
fragments into a document. Coordinates are in SVG pixels.
"""

import math

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]


def esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def num(value):
    return f"{value:.1f}".rstrip("0").rstrip(".")


def figure(width, height, title, parts):
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(width)}" height="{num(height)}" '
        f'viewBox="0 0 {num(width)} {num(height)}" font-family="sans-serif" font-size="12">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n'
        f'<text x="12" y="22" font-size="16" font-weight="bold">{esc(title)}</text>\n'
    )
    return head + "\n".join(parts) + "\n</svg>\n"


def viridis_like(t):
    """Dark blue -> teal -> yellow, for t in [0, 1]."""
    t = min(1.0, max(0.0, t))
    stops = [(0.0, (68, 1, 84)), (0.33, (49, 104, 142)), (0.66, (53, 183, 121)), (1.0, (253, 231, 37))]
    for (t0, c0), (t1, c1) in zip(stops, stops[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            return "#%02x%02x%02x" % tuple(round(a + f * (b - a)) for a, b in zip(c0, c1))
    return "#fde725"


def heatmap(x, y, image, cell, label, lo=None, hi=None):
    """One image (rows x cols of floats) as cell-sized squares, with a label above."""
    rows, cols = len(image), len(image[0])
    flat = [v for row in image for v in row if math.isfinite(v)]
    lo = min(flat) if lo is None else lo
    hi = max(flat) if hi is None else hi
    span = hi - lo if hi > lo else 1.0
    out = [f'<g transform="translate({num(x)},{num(y)})">', f'<text x="0" y="-4">{esc(label)}</text>']
    for r in range(rows):
        for c in range(cols):
            v = image[r][c]
            color = "#ffffff" if not math.isfinite(v) else viridis_like((v - lo) / span)
            out.append(f'<rect x="{num(c * cell)}" y="{num(r * cell)}" width="{num(cell + 0.3)}" height="{num(cell + 0.3)}" fill="{color}"/>')
    out.append(f'<rect x="0" y="0" width="{num(cols * cell)}" height="{num(rows * cell)}" fill="none" stroke="#333"/>')
    out.append("</g>")
    return "\n".join(out)


def line_plot(x, y, width, height, series, xlabel, ylabel, title=""):
    """series: list of (name, xs, ys, color); axes from the data, a legend on the right."""
    xs_all = [v for _, xs, _, _ in series for v in xs]
    ys_all = [v for _, _, ys, _ in series for v in ys if math.isfinite(v)]
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = min(ys_all), max(ys_all)
    if y1 <= y0:
        y1 = y0 + 1.0
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad
    sx = lambda v: (v - x0) / ((x1 - x0) or 1.0) * width
    sy = lambda v: height - (v - y0) / (y1 - y0) * height
    out = [f'<g transform="translate({num(x)},{num(y)})">']
    if title:
        out.append(f'<text x="0" y="-6" font-weight="bold">{esc(title)}</text>')
    out.append(f'<rect x="0" y="0" width="{num(width)}" height="{num(height)}" fill="none" stroke="#999"/>')
    for name, xs, ys, color in series:
        step = max(1, len(xs) // int(2 * width))
        pts = " ".join(f"{num(sx(a))},{num(sy(b))}" for a, b in list(zip(xs, ys))[::step] if math.isfinite(b))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.2"/>')
    for i, (name, _, _, color) in enumerate(series):
        out.append(f'<text x="{num(width + 8)}" y="{num(12 + 14 * i)}" fill="{color}">{esc(name)}</text>')
    out.append(f'<text x="0" y="{num(height + 14)}">{esc(num(x0))}</text>')
    out.append(f'<text x="{num(width)}" y="{num(height + 14)}" text-anchor="end">{esc(num(x1))}</text>')
    out.append(f'<text x="{num(width / 2)}" y="{num(height + 28)}" text-anchor="middle">{esc(xlabel)}</text>')
    out.append(f'<text x="-6" y="{num(height)}" text-anchor="end">{esc(f"{y0:.3g}")}</text>')
    out.append(f'<text x="-6" y="10" text-anchor="end">{esc(f"{y1:.3g}")}</text>')
    out.append(f'<text x="-40" y="{num(height / 2)}" text-anchor="middle" transform="rotate(-90 -40 {num(height / 2)})">{esc(ylabel)}</text>')
    out.append("</g>")
    return "\n".join(out)


def bars(x, y, width, height, items, ylabel, title=""):
    """items: list of (label, value, color); bars from zero."""
    top = max([v for _, v, _ in items] + [1e-12]) * 1.1
    slot = width / max(1, len(items))
    out = [f'<g transform="translate({num(x)},{num(y)})">']
    if title:
        out.append(f'<text x="0" y="-6" font-weight="bold">{esc(title)}</text>')
    out.append(f'<line x1="0" y1="{num(height)}" x2="{num(width)}" y2="{num(height)}" stroke="#333"/>')
    for i, (label, value, color) in enumerate(items):
        h = value / top * height
        bx = i * slot + 0.15 * slot
        out.append(f'<rect x="{num(bx)}" y="{num(height - h)}" width="{num(0.7 * slot)}" height="{num(h)}" fill="{color}"/>')
        out.append(f'<text x="{num(bx + 0.35 * slot)}" y="{num(height - h - 3)}" text-anchor="middle" font-size="10">{esc(f"{value:.3g}")}</text>')
        out.append(f'<text x="{num(bx + 0.35 * slot)}" y="{num(height + 14)}" text-anchor="middle" font-size="10">{esc(label)}</text>')
    out.append(f'<text x="-40" y="{num(height / 2)}" text-anchor="middle" transform="rotate(-90 -40 {num(height / 2)})">{esc(ylabel)}</text>')
    out.append("</g>")
    return "\n".join(out)
