import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEEP_LEARNING_BASE_PARAMETER, UBUNTU_24_04_PARAMETER } from '../../../lib/core/image-recipe.js';
import { STACK_NAMES } from '../../../lib/infra/app.js';
import { packageRoot } from '../../../lib/infra/package-paths.js';
import { synthesizeTemplates } from '../../../lib/sandbox/templates.js';
import { cfnText, readableStatements, removeSynthesized, resourceOf, synthesize, type Synthesized } from './synth.js';

afterAll(removeSynthesized);

/**
 * The repository's sample blueprints, as `cdk deploy` builds them: every sample names an image
 * recipe (no placeholder AMI is left), CPU analyses on Ubuntu LTS, GPU analyses on the Deep
 * Learning Base AMI, and each analysis launches exactly the image its stack builds.
 */
const SAMPLES = [
  { analysis: 'kalman-smoother', base: UBUNTU_24_04_PARAMETER, buildType: 'm5.large', install: 'InstallNode' },
  { analysis: 'widefield-denoise', base: UBUNTU_24_04_PARAMETER, buildType: 'c5.large', install: 'InstallPythonNumpy' },
  { analysis: 'widefield-demix', base: DEEP_LEARNING_BASE_PARAMETER, buildType: 'g4dn.xlarge', install: 'InstallPythonNumpy' },
  { analysis: 'ensemble-pose', base: DEEP_LEARNING_BASE_PARAMETER, buildType: 'g4dn.xlarge', install: 'InstallPythonNumpy' },
] as const;

let synth: Synthesized;

beforeAll(() => {
  synth = synthesize({ blueprintsDir: join(packageRoot(), 'blueprints'), usersDir: join(packageRoot(), 'users'), context: {}, nagChecks: false });
});

type Template = Synthesized['platform'];

function baseParameterOf(template: Template, parameter: string): string {
  const parameters = template.toJSON()['Parameters'] as Record<string, { Type: string; Default: string }>;
  const [id] = Object.entries(parameters).find(([, p]) => p.Default === parameter) ?? [];
  if (!id) throw new Error(`no template parameter for ${parameter}; have ${Object.values(parameters).map((p) => p.Default).join(', ')}`);
  return id;
}

function componentSteps(template: Template, prefix: string): { phase: string; steps: string[] }[] {
  const document = JSON.parse(cfnText(resourceOf(template, 'AWS::ImageBuilder::Component', prefix).properties['Data'])) as { phases: { name: string; steps: { name: string }[] }[] };
  return document.phases.map((phase) => ({ phase: phase.name, steps: phase.steps.map((step) => step.name) }));
}

describe("the repository's sample analyses build their images from recipes", () => {
  it('deploys every sample, none of them with a literal AMI', () => {
    expect(synth.stacks.analyses.map((stack) => stack.analysis).sort()).toEqual(SAMPLES.map((s) => s.analysis).sort());
  });

  describe.each(SAMPLES)('$analysis', ({ analysis, base, buildType, install }) => {
    let template: Template;
    beforeAll(() => {
      template = synth.analysis(analysis);
    });

    it(`builds one image on the base that the SSM public parameter names at deploy time (${base.includes('deeplearning') ? 'Deep Learning Base AMI' : 'Ubuntu LTS'})`, () => {
      template.resourceCountIs('AWS::ImageBuilder::Image', 1);
      const parameter = baseParameterOf(template, base);
      expect((template.toJSON()['Parameters'] as Record<string, { Type: string }>)[parameter]?.Type).toBe('AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>');
      expect(resourceOf(template, 'AWS::ImageBuilder::ImageRecipe', 'ImageRecipe').properties['ParentImage']).toEqual({ Ref: parameter });
    });

    it('puts the platform-owned runner component first, then the analysis component with its install step and checks', () => {
      const components = resourceOf(template, 'AWS::ImageBuilder::ImageRecipe', 'ImageRecipe').properties['Components'] as { ComponentArn: { 'Fn::GetAtt': [string, string] } }[];
      expect(components.map((c) => c.ComponentArn['Fn::GetAtt'][0])).toEqual([
        resourceOf(template, 'AWS::ImageBuilder::Component', 'ImageRunnerComponent').id,
        resourceOf(template, 'AWS::ImageBuilder::Component', 'ImageAnalysisComponent').id,
      ]);
      expect(componentSteps(template, 'ImageRunnerComponent')[0]?.steps).toEqual(['InstallSystemPackages', 'InstallAwsCli', 'EnableSsmAgent', 'PrepareWorkflowFolder']);
      const analysisPhases = componentSteps(template, 'ImageAnalysisComponent');
      expect(analysisPhases[0]?.steps).toEqual(['DownloadEnvironment', 'UnpackEnvironment', install]);
      expect(analysisPhases.map((p) => p.phase)).toEqual(['build', 'validate', 'test']);
    });

    it(`builds on ${buildType}`, () => {
      expect(resourceOf(template, 'AWS::ImageBuilder::InfrastructureConfiguration', 'ImageInfrastructure').properties['InstanceTypes']).toEqual([buildType]);
    });

    it('launches the built image id: the registry item and the launch permission name it, with the recipe hash and base image', () => {
      const image = resourceOf(template, 'AWS::ImageBuilder::Image', 'Image');
      const registry = resourceOf(template, 'Custom::NeurocaasRegistryItem', 'Registration');
      const item = (JSON.parse(cfnText(registry.properties['Create'])) as { parameters: { Item: Record<string, { S: string }> } }).parameters.Item;
      expect(item['amiId']).toEqual({ S: `<${image.id}.ImageId>` });
      expect(item['imageSource']).toEqual({ S: 'recipe' });
      expect(item['recipeHash']?.S).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(item['baseImageParameter']).toEqual({ S: base });
      const launch = readableStatements(resourceOf(template, 'AWS::IAM::Policy', 'ProtocolAccessPolicy').properties['PolicyDocument']).find(
        (s) => s.Sid === 'LaunchFromAnalysisImageAndSecurityGroup',
      );
      expect(launch?.Resource[0]).toBe(`arn:<AWS::Partition>:ec2:<AWS::Region>::image/<${image.id}.ImageId>`);
    });
  });

  it('checks the NVIDIA driver on the GPU images only', () => {
    for (const { analysis, base } of SAMPLES) {
      const checks = componentSteps(synth.analysis(analysis), 'ImageAnalysisComponent')[1]?.steps ?? [];
      expect(checks.includes('GpuDriverSeesTheGpu'), analysis).toBe(base === DEEP_LEARNING_BASE_PARAMETER);
    }
  });
});

describe("the sandbox's templates of the repository's samples", () => {
  it('build no image (the emulator has no Image Builder) and launch the emulator\'s AMI in every analysis', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'neurocaas-sandbox-synth-'));
    try {
      const analyses = SAMPLES.map((s) => s.analysis);
      const templates = synthesizeTemplates({ blueprintsDir: join(packageRoot(), 'blueprints'), usersDir: join(packageRoot(), 'users'), outdir, amiId: 'ami-0e0e0e0e0e0e0e0e0', analyses });
      for (const analysis of analyses) {
        const template = templates.find((t) => t.stackName === STACK_NAMES.analysis(analysis));
        const resources = Object.values((template?.template as { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }> }).Resources);
        expect(resources.filter((r) => r.Type.startsWith('AWS::ImageBuilder::')), analysis).toEqual([]);
        const registry = resources.find((r) => r.Type === 'Custom::NeurocaasRegistryItem');
        expect(JSON.stringify(registry?.Properties), analysis).toContain('ami-0e0e0e0e0e0e0e0e0');
      }
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
    // One whole synth: about 5 s alone, several times that on a shared machine.
  }, 180_000);
});
