// A stable colour per run: the same prefix gets the same colour in every view and on
// every visit, whatever else is selected (a hash of the prefix, not a position).

export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// 24 hues 15° apart, each in a darker and a lighter shade: 48 colours that stay
// apart from each other on a white and on a dark background.
export function runColor(prefix: string): string {
  const h = hashString(prefix);
  const slot = h % 48;
  const hue = (slot % 24) * 15 + 7;
  const light = slot < 24 ? 44 : 58;
  return `hsl(${hue} 72% ${light}%)`;
}
