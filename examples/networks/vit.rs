network! {
    /// torchvision's `EncoderBlock`: pre-norm self-attention and MLP, each
    /// with a residual connection.
    pub block EncoderBlock(x: [B, T, E], heads: usize, mlp_dim: usize) -> [B, T, E] {
        let a = x -> ln_1: LayerNorm(eps = 1e-6) -> self_attention: MultiHeadAttention(heads = heads)
                  -> dropout: Dropout(0.0);
        let y = x + a;
        let m = y -> ln_2: LayerNorm(eps = 1e-6)
                  -> mlp: seq { Linear(mlp_dim) -> GELU -> Dropout(0.0) -> Linear(E) -> Dropout(0.0) };
        y + m
    }

    /// ViT-B/16 (Dosovitskiy et al., 2021) exactly as torchvision's
    /// `vit_b_16`: 16x16 patches embedded to 768 features, a class token, a
    /// learned position embedding, twelve pre-norm encoder blocks of 12 heads
    /// and a 3072-wide MLP, the class token's features into the classifier.
    pub VitB16(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> conv_proj: PatchEmbed(3 -> 768, patch = 16)           : [B, 196, 768]
          -> class_token: ClassToken                               : [B, 197, 768]
          -> encoder.pos_embedding: PosEmbedding
          -> encoder.dropout: Dropout(0.0)
          -> encoder.layers: seq {
                 encoder_layer_0: EncoderBlock(12, 3072) -> encoder_layer_1: EncoderBlock(12, 3072)
              -> encoder_layer_2: EncoderBlock(12, 3072) -> encoder_layer_3: EncoderBlock(12, 3072)
              -> encoder_layer_4: EncoderBlock(12, 3072) -> encoder_layer_5: EncoderBlock(12, 3072)
              -> encoder_layer_6: EncoderBlock(12, 3072) -> encoder_layer_7: EncoderBlock(12, 3072)
              -> encoder_layer_8: EncoderBlock(12, 3072) -> encoder_layer_9: EncoderBlock(12, 3072)
              -> encoder_layer_10: EncoderBlock(12, 3072) -> encoder_layer_11: EncoderBlock(12, 3072)
             }
          -> encoder.ln: LayerNorm(eps = 1e-6)
          -> Select(dim = 1, index = 0)                            : [B, 768]
          -> heads.head: Linear(1000)
    }
}
