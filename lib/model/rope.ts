// Rotary inverse frequencies for each scaling type, as transformers computes them
// (modeling_rope_utils): this is policy, so it lives here and the kernel only rotates.
import type { ModelConfig } from "../checkpoint/config";

export function ropeInverseFrequencies(config: Pick<ModelConfig, "headDim" | "ropeTheta" | "ropeScaling">): Float32Array {
  const { headDim: d, ropeTheta: theta, ropeScaling: scaling } = config;
  // transformers: 1 / theta ** (arange(0, d, 2).float() / d), in f32
  const base = Float32Array.from({ length: d / 2 }, (_, i) => 1 / theta ** Math.fround((2 * i) / d));
  switch (scaling.type) {
    case "default":
      return base;
    case "linear":
      return base.map((f) => f / scaling.factor);
    case "llama3": {
      const lowWavelen = scaling.originalMaxPositionEmbeddings / scaling.lowFreqFactor;
      const highWavelen = scaling.originalMaxPositionEmbeddings / scaling.highFreqFactor;
      return base.map((f) => {
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < highWavelen) return f;
        if (wavelen > lowWavelen) return f / scaling.factor;
        const smooth =
          (scaling.originalMaxPositionEmbeddings / wavelen - scaling.lowFreqFactor) / (scaling.highFreqFactor - scaling.lowFreqFactor);
        return (1 - smooth) * (f / scaling.factor) + smooth * f;
      });
    }
  }
}
