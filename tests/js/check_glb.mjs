// node check_glb.mjs FILE.glb: what the Khronos glTF validator and three.js make of a posebus .glb, as JSON:
// {validator: {errors, warnings, messages}, clips: [{name, duration, times}], joints: [names],
//  positions: [frame][joint][x, y, z], vertices: [frame][k][x, y, z] or null} where positions are the
// joints' world positions three.js's AnimationMixer gives at each keyframe time, and vertices every
// VERTEX_STEP-th vertex of the skinned mesh (if any) as three.js skins it (SkinnedMesh.applyBoneTransform).
import { readFileSync } from "node:fs";
import { validateBytes } from "gltf-validator";
import { AnimationMixer, LoopOnce } from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";

const bytes = new Uint8Array(readFileSync(process.argv[2]));
const report = await validateBytes(bytes, { maxIssues: 100 });
const gltf = await new GLTFLoader().parseAsync(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), "");

const clips = gltf.animations.map((clip) => ({
  name: clip.name,
  duration: clip.duration,
  times: Array.from(clip.tracks[0].times),
}));
const VERTEX_STEP = 10;
let skinned = null;
gltf.scene.traverse((object) => { if (object.isSkinnedMesh) skinned = object; });
const joints = [];
gltf.scene.traverse((object) => {
  if (object.userData && "track_id" in object.userData) {
    object.traverse((joint) => joints.push(joint));
  }
});
gltf.scene.updateMatrixWorld(true);
const mixer = new AnimationMixer(gltf.scene);
const action = mixer.clipAction(gltf.animations[0]);
action.setLoop(LoopOnce, 1);
action.clampWhenFinished = true; // the last keyframe's time is the clip's end: hold it rather than wrap to 0
action.play();
// One pass over the keyframes: a LoopOnce action that reached its end stays paused there.
const positions = [], vertices = skinned ? [] : null;
for (const time of clips[0].times) {
  mixer.setTime(time);
  gltf.scene.updateMatrixWorld(true);
  positions.push(joints.map((joint) => {
    const p = joint.getWorldPosition(joint.position.clone());
    return [p.x, p.y, p.z];
  }));
  if (skinned) {
    skinned.skeleton.update();
    const position = skinned.geometry.attributes.position, out = [];
    for (let i = 0; i < position.count; i += VERTEX_STEP) {
      const v = skinned.applyBoneTransform(i, new skinned.position.constructor().fromBufferAttribute(position, i));
      out.push(v.applyMatrix4(skinned.matrixWorld).toArray());
    }
    vertices.push(out);
  }
}
console.log(JSON.stringify({
  validator: { errors: report.issues.numErrors, warnings: report.issues.numWarnings, messages: report.issues.messages },
  clips,
  joints: joints.map((joint) => joint.name),
  positions,
  vertices,
}));
