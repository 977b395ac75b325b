// The reference side of tests/test_sketchrnn_js.py: Google's @magenta/sketch reads a
// sketch-rnn-js model file and a drawing, and prints, as JSON, the mixture it predicts at every
// step (getPDF after the start token and after each point), at each requested temperature.
//
// usage: node tests/js/mixture_params.js REQUEST.json
// REQUEST: {"model": path, "strokes": [[dx, dy, p1, p2, p3], ...] in data units,
//           "temperatures": [t, ...]}
// Pixel factor 1 makes the inputs data units (sketch-rnn-js's default of 2 halves them).
'use strict';
const fs = require('fs');
const sketch = require('@magenta/sketch');

const request = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const [info, dims, blobs] = JSON.parse(fs.readFileSync(request.model, 'utf8'));
const model = new sketch.SketchRNN('unused');
model.instantiateFromJSON(info, dims, blobs);
model.setPixelFactor(1.0);

const m = model.NMIXTURE;
const steps = [];
let state = model.zeroState();
const inputs = [model.zeroInput()].concat(request.strokes);
for (const stroke of inputs) {
  state = model.update(stroke, state);
  steps.push(request.temperatures.map((t) => {
    const pdf = model.getPDF(state, t, t);
    return {
      pi: Array.from(pdf.pi), mu_x: Array.from(pdf.muX), mu_y: Array.from(pdf.muY),
      sigma_x: Array.from(pdf.sigmaX), sigma_y: Array.from(pdf.sigmaY).slice(0, m),
      corr: Array.from(pdf.corr), pen: Array.from(pdf.pen),
    };
  }));
}
process.stdout.write(JSON.stringify({scale_factor: model.scaleFactor, steps}));
