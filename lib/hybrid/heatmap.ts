// A heatmap of lazy ratios as SVG: rows are layers, columns heads or prompts. Lazy layers are
// marked. Plain SVG so it opens in any browser and needs no drawing library.

export interface HeatmapOptions {
  title: string;
  /** values[row][column] in [0, 1]; undefined cells are drawn empty. */
  values: Array<Array<number | undefined>>;
  rowLabel: string;
  columnLabel: string;
  /** Rows to mark (lazy layers), per column set or one set for all. */
  marked?: Set<number>;
}

// Eight stops of a perceptually even blue→yellow scale (viridis endpoints and midpoints).
const stops = ["#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725"];

function color(v: number): string {
  const x = Math.min(1, Math.max(0, v)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x)),
    f = x - i;
  const mix = (a: string, b: string, k: number) =>
    Math.round(parseInt(a, 16) * (1 - k) + parseInt(b, 16) * k)
      .toString(16)
      .padStart(2, "0");
  const [a, b] = [stops[i], stops[i + 1]];
  return `#${mix(a.slice(1, 3), b.slice(1, 3), f)}${mix(a.slice(3, 5), b.slice(3, 5), f)}${mix(a.slice(5, 7), b.slice(5, 7), f)}`;
}

const escapeXml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

/**
 * @example fs.writeFileSync("ratios.svg", heatmapSvg({ title: "lazy ratio", values, rowLabel: "layer", columnLabel: "head" }));
 */
export function heatmapSvg(o: HeatmapOptions): string {
  const rows = o.values.length,
    cols = Math.max(1, ...o.values.map((r) => r.length));
  const cell = Math.max(6, Math.min(24, Math.floor(720 / cols))),
    left = 70,
    top = 40,
    legend = 60,
    legendStep = 8,
    legendSteps = 20;
  // A few layers (or heads) are shorter than the legend, and a narrow map than its title: the
  // image takes the larger of each, so nothing is drawn outside it.
  const plotHeight = Math.max(rows * cell, (legendSteps + 1) * legendStep);
  const lazyNote = "◆ lazy (streaming) layer";
  const textWidth = (text: string, size: number) => Math.ceil(text.length * size * 0.6);
  const width = Math.max(
      left + cols * cell + legend + 20,
      left + textWidth(o.title, 14) + 20,
      o.marked?.size ? left + textWidth(lazyNote, 11) + 20 : 0,
    ),
    height = top + plotHeight + 40;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<text x="${left}" y="20" font-size="14">${escapeXml(o.title)}</text>`,
    `<text x="${left + (cols * cell) / 2}" y="${height - 8}" text-anchor="middle">${escapeXml(o.columnLabel)}</text>`,
    `<text x="14" y="${top + (rows * cell) / 2}" transform="rotate(-90 14 ${top + (rows * cell) / 2})" text-anchor="middle">${escapeXml(o.rowLabel)}</text>`,
  ];
  o.values.forEach((row, r) => {
    const y = top + r * cell;
    parts.push(`<text x="${left - 6}" y="${y + cell * 0.75}" text-anchor="end">${r}${o.marked?.has(r) ? " ◆" : ""}</text>`);
    row.forEach((v, c) => {
      if (v === undefined) return;
      parts.push(
        `<rect x="${left + c * cell}" y="${y}" width="${cell}" height="${cell}" fill="${color(v)}"><title>${o.rowLabel} ${r}, ${o.columnLabel} ${c}: ${v.toFixed(4)}</title></rect>`,
      );
    });
  });
  const lx = left + cols * cell + 20;
  for (let i = 0; i <= legendSteps; i++)
    parts.push(
      `<rect x="${lx}" y="${top + (legendSteps - i) * legendStep}" width="14" height="${legendStep}" fill="${color(i / legendSteps)}"/>`,
    );
  parts.push(
    `<text x="${lx + 18}" y="${top + legendStep}">1</text><text x="${lx + 18}" y="${top + (legendSteps + 1) * legendStep}">0</text>`,
  );
  if (o.marked?.size) parts.push(`<text x="${left}" y="${top + plotHeight + 16}">${lazyNote}</text>`);
  parts.push("</svg>");
  return parts.join("\n");
}
