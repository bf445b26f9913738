import sharp from 'sharp';

/**
 * A synthetic frontal chest radiograph: dark background, bright body ellipse, two darker lung
 * fields, a spine and a heart shadow, plus seeded noise. Deterministic for a given seed.
 */
export async function syntheticChestXray(options: {
  width?: number;
  height?: number;
  seed?: number;
  format?: 'png' | 'jpeg';
  bits?: 8 | 16;
}): Promise<Buffer> {
  const width = options.width ?? 512;
  const height = options.height ?? 512;
  const bits = options.bits ?? 8;
  let state = (options.seed ?? 1) >>> 0 || 1;
  const random = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x100000000;
  };
  const max = bits === 16 ? 65535 : 255;
  const pixels = bits === 16 ? new Uint16Array(width * height) : new Uint8Array(width * height);
  const cx = width / 2;
  const cy = height / 2;
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const nx = (x - cx) / (width * 0.45);
      const ny = (y - cy) / (height * 0.48);
      let v = 0.08;
      if (nx * nx + ny * ny < 1) v = 0.7;
      for (const side of [-1, 1]) {
        const lx = (x - (cx + side * width * 0.18)) / (width * 0.14);
        const ly = (y - cy * 0.95) / (height * 0.3);
        if (lx * lx + ly * ly < 1) v = 0.25;
      }
      if (Math.abs(x - cx) < width * 0.03) v = 0.85;
      const hx = (x - cx * 1.08) / (width * 0.13);
      const hy = (y - cy * 1.2) / (height * 0.12);
      if (hx * hx + hy * hy < 1) v = Math.max(v, 0.6);
      v += (random() - 0.5) * 0.06;
      pixels[y * width + x] = Math.round(Math.min(1, Math.max(0, v)) * max);
    }
  }
  const image = sharp(Buffer.from(pixels.buffer), { raw: { width, height, channels: 1, ...(bits === 16 ? { depth: 'ushort' } : {}) } });
  if (options.format === 'jpeg') return image.jpeg({ quality: 90 }).toBuffer();
  return bits === 16 ? image.toColourspace('grey16').png().toBuffer() : image.png().toBuffer();
}
