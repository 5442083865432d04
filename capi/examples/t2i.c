/* Text to image from C: mvdit's C ABI end to end.
 *
 *   cc -o t2i t2i.c -I../include -L<dir of libmvdit.so> -lmvdit
 *   ./t2i CHECKPOINT TEXT_ENCODER_DIR VAE SIZE STEPS OUT "a prompt" ["another" ...]
 *
 * Writes OUT.ppm (the images side by side, binary PPM) and OUT.latents (the final latents as
 * little-endian float32 [N, C, h, w]); the seed is 0, guidance 2, shift 4, as `mvdit sample
 * --prompt ... --seed 0`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvdit.h"

static int fail(const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, mvdit_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: %s CHECKPOINT TEXT_ENCODER VAE SIZE STEPS OUT PROMPT...\n", argv[0]);
        return 2;
    }
    size_t size = (size_t)strtoul(argv[4], NULL, 10);
    size_t n = (size_t)(argc - 7);
    const char *const *prompts = (const char *const *)&argv[7];

    MvditTextOptions options = mvdit_text_options_default();
    MvditTextToImage *pipe = mvdit_text_to_image_open(argv[1], argv[2], argv[3], &options);
    if (!pipe) return fail("open");

    size_t image_bytes = 0, latent_floats = 0;
    if (mvdit_text_to_image_sizes(pipe, n, size, &image_bytes, &latent_floats) != MVDIT_OK) return fail("sizes");
    uint8_t *images = malloc(image_bytes);
    float *latents = malloc(latent_floats * sizeof(float));
    if (!images || !latents) return 1;

    MvditSampleSettings settings = mvdit_sample_settings_default();
    settings.size = size;
    settings.steps = (size_t)strtoul(argv[5], NULL, 10);
    if (mvdit_text_to_image_generate(pipe, prompts, n, &settings, NULL, 0, images, image_bytes, latents, latent_floats) != MVDIT_OK)
        return fail("generate");
    mvdit_text_to_image_free(pipe);

    char path[4096];
    snprintf(path, sizeof path, "%s.latents", argv[6]);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(latents, sizeof(float), latent_floats, f) != latent_floats || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    /* The N images [N, S, S, 3] side by side: row y of image i at x offset i*S. */
    snprintf(path, sizeof path, "%s.ppm", argv[6]);
    f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    fprintf(f, "P6\n%zu %zu\n255\n", n * size, size);
    for (size_t y = 0; y < size; y++)
        for (size_t i = 0; i < n; i++)
            fwrite(images + (i * size + y) * size * 3, 1, size * 3, f);
    if (fclose(f) != 0) {
        perror(path);
        return 1;
    }
    printf("wrote %zu images of %zux%zu: %s.ppm, %s.latents\n", n, size, size, argv[6], argv[6]);
    free(images);
    free(latents);
    return 0;
}
