import { randomUUID } from 'node:crypto';
import {
  BadGatewayException,
  BadRequestException,
  ConflictException,
  Injectable,
  NotFoundException,
  type OnModuleDestroy,
} from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { InjectModel } from '@nestjs/mongoose';
import type { Model } from 'mongoose';
import { AuditLog } from '../../audit/audit-log.service.js';
import type { AppConfig } from '../../config/app-config.js';
import type { CatalogInstance } from '../catalog.js';
import { EurekaHttpClient } from '../eureka/eureka-http.js';
import { RegistryBridge } from '../registry-bridge.service.js';
import { DubboConfiguratorWriter, type DubboServiceName } from './dubbo-configurator.writer.js';
import { NATIVE_CONTROL, type NativeControl } from './native-control.model.js';

export interface Actor {
  actor: string;
  role: string;
  from: string;
  reason: string;
}

/**
 * Controls for applications that run no agent, written in the registry's own language:
 *
 * - a Dubbo provider instance is isolated with a consumer-side, service-scope configurator item
 *   `disabled: true` naming its address, for each service it provides, and weighted with
 *   `weight: N` (consumers apply both live, within about 0.2 s); it is restored by writing
 *   `disabled: false`, not by deleting the item: a Dubbo 3.3 consumer would otherwise never call
 *   the instance again (see DubboConfiguratorWriter);
 * - a Eureka instance is isolated with the status override `OUT_OF_SERVICE`, which Eureka clients
 *   (Ribbon, Spring Cloud LoadBalancer) skip.
 *
 * Each control is recorded before it is reported done, and undone by reverting it.
 */
@Injectable()
export class NativeControls implements OnModuleDestroy {
  private readonly dubbo?: DubboConfiguratorWriter;
  private readonly eureka?: EurekaHttpClient;

  constructor(
    config: ConfigService<AppConfig, true>,
    private readonly bridge: RegistryBridge,
    private readonly audit: AuditLog,
    @InjectModel(NATIVE_CONTROL) private readonly controls: Model<NativeControl>,
  ) {
    const zk = config.get('zookeeper', { infer: true });
    if (zk) this.dubbo = new DubboConfiguratorWriter(zk.connect, zk.dubboRoots[0]);
    const eureka = config.get('eureka', { infer: true });
    if (eureka) this.eureka = new EurekaHttpClient({ urls: eureka.urls });
  }

  onModuleDestroy(): void {
    this.dubbo?.close();
  }

  list(
    filter: { application?: string; instanceId?: string; state?: NativeControl['state'] },
    page: { offset: number; limit: number },
  ): Promise<[NativeControl[], number]> {
    const query = this.controls.find(filter).sort({ createdAt: -1 }).skip(page.offset).limit(page.limit).lean<NativeControl[]>();
    return Promise.all([query.exec(), this.controls.countDocuments(filter).exec()]);
  }

  async get(id: string): Promise<NativeControl> {
    const control = await this.controls.findById(id).lean().exec();
    if (!control) throw new NotFoundException(`no control "${id}"`);
    return control;
  }

  async isolate(instanceId: string, who: Actor): Promise<NativeControl> {
    const instance = this.instance(instanceId);
    if (await this.controls.exists({ instanceId, action: 'isolate', state: { $in: ['pending', 'active'] } })) {
      throw new ConflictException(`instance ${instanceId} is already isolated; revert that control to restore it`);
    }
    if (instance.kind === 'dubbo') {
      const { writer, services } = this.dubboTarget(instance);
      const address = `${instance.host}:${instance.port}`;
      return this.record(
        instance,
        'isolate',
        who,
        { registry: 'zookeeper', targets: services.map((x) => writer.pathOf(x)), services },
        () => Promise.all(services.map((x) => writer.apply(x, { providerAddress: address, parameter: 'disabled' }, true))),
      );
    }
    const { app, id } = this.eurekaInstance(instance);
    const client = this.requireEureka();
    return this.record(instance, 'isolate', who, { registry: 'eureka', targets: [`${app}/${id}`] }, () =>
      client.overrideStatus(app, id, 'OUT_OF_SERVICE'),
    );
  }

  async weight(instanceId: string, weight: number, who: Actor): Promise<NativeControl> {
    const instance = this.instance(instanceId);
    if (instance.kind !== 'dubbo') throw new BadRequestException('weights are a Dubbo control; Eureka has no weight');
    const { writer, services } = this.dubboTarget(instance);
    const address = `${instance.host}:${instance.port}`;
    const previous = await this.controls.find({ instanceId, action: 'weight', state: 'active' }).lean().exec();
    const control = await this.record(
      instance,
      'weight',
      who,
      { registry: 'zookeeper', targets: services.map((x) => writer.pathOf(x)), services, weight },
      () => Promise.all(services.map((x) => writer.apply(x, { providerAddress: address, parameter: 'weight' }, weight))),
    );
    // The new entry replaced the old one in the configurator: the old control is superseded.
    await this.controls.updateMany({ _id: { $in: previous.map((p) => p._id) } }, { $set: { state: 'superseded' } }).exec();
    return control;
  }

  async revert(id: string, who: Actor): Promise<NativeControl> {
    const control = await this.get(id);
    if (control.state !== 'active') throw new ConflictException(`control ${id} is ${control.state}, not active`);
    try {
      if (control.registry === 'zookeeper') {
        const writer = this.requireDubboWriter();
        const address = `${control.host}:${control.port}`;
        await Promise.all(
          (control.services ?? []).map((x) =>
            control.action === 'isolate'
              ? writer.apply(x, { providerAddress: address, parameter: 'disabled' }, false)
              : writer.retract(x, { providerAddress: address, parameter: 'weight' }),
          ),
        );
      } else {
        const [app, instance] = splitOnce(control.targets[0] ?? '', '/');
        await this.requireEureka().removeStatusOverride(app, instance);
      }
    } catch (error) {
      throw new BadGatewayException(`could not undo ${control.action} in ${control.registry}: ${(error as Error).message}`);
    }
    const reverted = await this.controls
      .findOneAndUpdate(
        { _id: id, state: 'active' },
        { $set: { state: 'reverted', revertedAt: new Date(), revertedBy: who.actor } },
        { returnDocument: 'after' },
      )
      .lean()
      .exec();
    if (!reverted) throw new ConflictException(`control ${id} changed while it was being reverted`);
    await this.audited(who, `control.revert`, 'ok', 200, reverted, control);
    return reverted;
  }

  private instance(id: string): CatalogInstance {
    const instance = this.bridge.catalog.instance(id);
    if (!instance) throw new NotFoundException(`no instance "${id}" in the catalog`);
    return instance;
  }

  /** The writer and the services an instance provides (each gets its own configurator). */
  private dubboTarget(instance: CatalogInstance): { writer: DubboConfiguratorWriter; services: DubboServiceName[] } {
    if (!instance.sourceKinds.includes('zookeeper'))
      throw new BadRequestException(`instance ${instance.id} is not registered in ZooKeeper`);
    const services = new Map<string, DubboServiceName>();
    for (const s of instance.services) {
      if (s.side === 'provider') services.set(s.key, { interface: s.interface, group: s.group, version: s.version });
    }
    if (services.size === 0) throw new ConflictException(`instance ${instance.id} provides no service the catalog knows of`);
    return { writer: this.requireDubboWriter(), services: [...services.values()] };
  }

  private eurekaInstance(instance: CatalogInstance): { app: string; id: string } {
    const registration = this.bridge.catalog.registrationsOf(instance.id).find((r) => r.sourceKind === 'eureka');
    if (!registration) throw new BadRequestException(`instance ${instance.id} is not registered in Eureka`);
    const [app, id] = splitOnce(registration.key, '/');
    return { app, id };
  }

  private requireDubbo(instance: CatalogInstance): DubboConfiguratorWriter {
    if (!instance.sourceKinds.includes('zookeeper'))
      throw new BadRequestException(`instance ${instance.id} is not registered in ZooKeeper`);
    return this.requireDubboWriter();
  }

  private requireDubboWriter(): DubboConfiguratorWriter {
    if (!this.dubbo) throw new BadRequestException('no ZooKeeper is configured (ZOOKEEPER_CONNECT)');
    return this.dubbo;
  }

  private requireEureka(): EurekaHttpClient {
    if (!this.eureka) throw new BadRequestException('no Eureka is configured (EUREKA_URLS)');
    return this.eureka;
  }

  private audited(
    who: Actor,
    action: string,
    outcome: 'ok' | 'failed',
    status: number,
    after: NativeControl,
    before?: NativeControl,
  ) {
    return this.audit.record({
      actor: who.actor,
      role: who.role,
      from: who.from,
      action,
      outcome,
      status,
      application: after.application,
      target: after.instanceId,
      after,
      ...(before ? { before } : {}),
      reason: who.reason,
    });
  }

  private async record(
    instance: CatalogInstance,
    action: NativeControl['action'],
    who: Actor,
    write: Pick<NativeControl, 'registry' | 'targets' | 'services'> & { weight?: number },
    apply: () => Promise<unknown>,
  ): Promise<NativeControl> {
    const control: NativeControl = {
      _id: randomUUID(),
      action,
      application: instance.application,
      instanceId: instance.id,
      host: instance.host,
      port: instance.port,
      ...write,
      state: 'active',
      actor: who.actor,
      from: who.from,
      reason: who.reason,
      createdAt: new Date(),
    };
    // Recorded first: a control that cannot be recorded is not made.
    await this.controls.create({ ...control, state: 'pending' });
    try {
      await apply();
    } catch (error) {
      const failed = { ...control, state: 'failed' as const, error: (error as Error).message };
      await this.controls.updateOne({ _id: control._id }, { $set: { state: 'failed', error: failed.error } }).exec();
      await this.audited(who, `control.${action}`, 'failed', 502, failed);
      throw new BadGatewayException(`${write.registry} refused the ${action}: ${failed.error}`);
    }
    await this.controls.updateOne({ _id: control._id }, { $set: { state: 'active' } }).exec();
    await this.audited(who, `control.${action}`, 'ok', 201, control);
    return control;
  }
}

function splitOnce(value: string, separator: string): [string, string] {
  const at = value.indexOf(separator);
  return at === -1 ? [value, ''] : [value.slice(0, at), value.slice(at + 1)];
}
